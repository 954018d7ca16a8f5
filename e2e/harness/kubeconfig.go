package harness

import (
	"context"
	"fmt"
	"path/filepath"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// serviceAccountTokenTTL outlives any test run; the apiserver's minimum is
// ten minutes and a token that expires mid-run would look like an RBAC bug.
const serviceAccountTokenTTL = 24 * 60 * 60

func writeKubeconfig(path, server string, ca []byte, user, token string) error {
	const name = "kpo-e2e"
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters[name] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: ca}
	cfg.AuthInfos[user] = &clientcmdapi.AuthInfo{Token: token}
	cfg.Contexts[name] = &clientcmdapi.Context{Cluster: name, AuthInfo: user}
	cfg.CurrentContext = name
	return clientcmd.WriteToFile(*cfg, path)
}

// ServiceAccountToken creates the namespace and ServiceAccount if needed and
// returns a token for it from the TokenRequest API, the way a projected
// token volume would get one. There is no token controller, so legacy
// token Secrets would never be filled in.
func (c *Cluster) ServiceAccountToken(ctx context.Context, namespace, name string) (string, error) {
	if err := c.EnsureNamespace(ctx, namespace); err != nil {
		return "", err
	}
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace}}
	_, err := c.admin.CoreV1().ServiceAccounts(namespace).Create(ctx, sa, metav1.CreateOptions{})
	if err := unlessExists(err, "ServiceAccount", namespace+"/"+name); err != nil {
		return "", err
	}
	ttl := int64(serviceAccountTokenTTL)
	tr, err := c.admin.CoreV1().ServiceAccounts(namespace).CreateToken(ctx, name,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &ttl}},
		metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("requesting a token for ServiceAccount %s/%s: %w", namespace, name, err)
	}
	return tr.Status.Token, nil
}

// ServiceAccountKubeconfig writes a kubeconfig that authenticates as
// system:serviceaccount:<namespace>:<name>, creating the ServiceAccount if
// needed, and returns its path (inside Dir). The account has no permissions
// until a Role or ClusterRole is bound to it, for example with Apply.
func (c *Cluster) ServiceAccountKubeconfig(ctx context.Context, namespace, name string) (string, error) {
	token, err := c.ServiceAccountToken(ctx, namespace, name)
	if err != nil {
		return "", err
	}
	path := filepath.Join(c.dir, fmt.Sprintf("sa-%s-%s.kubeconfig", namespace, name))
	user := "system:serviceaccount:" + namespace + ":" + name
	if err := writeKubeconfig(path, c.serverURL, c.caPEM, user, token); err != nil {
		return "", err
	}
	return path, nil
}

// ServiceAccountRESTConfig is ServiceAccountKubeconfig for in-process
// clients.
func (c *Cluster) ServiceAccountRESTConfig(ctx context.Context, namespace, name string) (*rest.Config, error) {
	token, err := c.ServiceAccountToken(ctx, namespace, name)
	if err != nil {
		return nil, err
	}
	cfg := rest.CopyConfig(c.restConfig)
	cfg.BearerToken = token
	return cfg, nil
}
