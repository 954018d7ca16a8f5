"""The operator's core without Airflow: auth from a connection, the
configuration, and one run of a stand-in binary per exit code."""

import json
import logging
import os
import stat
import sys
import tempfile
import textwrap
import unittest
from pathlib import Path

from kpo_reaper_airflow import core


class AuthFromConnectionTest(unittest.TestCase):
    def auth(self, conn_type="http", login=None, password=None, host=None, extra=None, major=3):
        return core.auth_from_connection(conn_type, login, password, host, extra, major)

    def test_user_and_password_are_jwt_on_airflow3_and_basic_on_airflow2(self):
        a3 = self.auth(login="reaper", password="s3cret", major=3)
        a2 = self.auth(login="reaper", password="s3cret", major=2)
        self.assertEqual(a3.config, {"type": "airflow-jwt", "username": "reaper"})
        self.assertEqual(a2.config, {"type": "basic", "username": "reaper"})
        self.assertEqual(a3.secret_env, {"KPO_REAPER_AIRFLOW_AUTH_PASSWORD": "s3cret"})

    def test_password_alone_is_an_astronomer_token(self):
        a = self.auth(password="astro-token")
        self.assertEqual(a.config, {"type": "bearer"})
        self.assertEqual(a.secret_env, {"KPO_REAPER_AIRFLOW_AUTH_TOKEN": "astro-token"})

    def test_google_connection_is_adc_with_its_key_file(self):
        self.assertEqual(self.auth("google_cloud_platform").config, {"type": "google"})
        a = self.auth("google_cloud_platform", extra={"key_path": "/k.json", "scope": "a, b"})
        self.assertEqual(a.config, {"type": "google", "credentialsFile": "/k.json", "scopes": ["a", "b"]})

    def test_aws_connection_is_mwaa_by_environment_name(self):
        a = self.auth("aws", extra={"mwaa_environment": "prod", "region_name": "eu-west-1"})
        self.assertEqual(a.config, {"type": "mwaa"})
        self.assertEqual(a.mwaa, {"environment": "prod", "region": "eu-west-1"})
        self.assertEqual(a.secret_env, {})
        with self.assertRaisesRegex(core.ConfigError, "mwaa_environment"):
            self.auth("aws")

    def test_extra_auth_type_chooses_and_is_checked(self):
        self.assertEqual(self.auth(extra={"auth_type": "google"}).config, {"type": "google"})
        with self.assertRaisesRegex(core.ConfigError, "auth_type 'kerberos'"):
            self.auth(extra={"auth_type": "kerberos"})

    def test_keycloak_client_credentials(self):
        a = self.auth(login="x", password="cs", extra={"client_id": "reaper"})
        self.assertEqual(a.config, {"type": "airflow-jwt", "clientID": "reaper"})
        self.assertEqual(a.secret_env, {"KPO_REAPER_AIRFLOW_AUTH_CLIENTSECRET": "cs"})

    def test_connection_host_names_the_airflow(self):
        self.assertEqual(self.auth(host="airflow.example:8080", login="u", password="p").url,
                         "http://airflow.example:8080")
        self.assertEqual(self.auth(host="https://a.example/", password="t").url, "https://a.example")

    def test_no_connection_fields_is_no_auth(self):
        self.assertEqual(self.auth().config, {"type": "none"})


class BuildConfigTest(unittest.TestCase):
    def test_arguments_become_reaper_keys(self):
        auth = core.auth_from_connection("http", "u", "s3cret-pw", None, None, 3)
        c = core.build_config("http://af:8080/", auth, ["ns1"], "/kc", False,
                              {"reaper": {"confirmations": 3}, "kubernetes.labelSelector": "a=b"})
        self.assertEqual(c["airflow"], {"url": "http://af:8080", "auth": {"type": "airflow-jwt", "username": "u"}})
        self.assertEqual(c["kubernetes"], {"namespaces": ["ns1"], "kubeconfig": "/kc", "labelSelector": "a=b"})
        self.assertEqual(c["reaper"], {"dryRun": False, "confirmations": 3})
        self.assertEqual(c["log"], {"format": "json"})
        self.assertEqual(c["server"], {"address": ""})
        self.assertNotIn("s3cret-pw", json.dumps(c))

    def test_dry_run_is_kept_and_in_cluster_is_empty_kubeconfig(self):
        c = core.build_config("http://af", core.Auth(), ["ns"], None, True)
        self.assertIs(c["reaper"]["dryRun"], True)
        self.assertEqual(c["kubernetes"]["kubeconfig"], "")

    def test_the_log_format_stays_json(self):
        c = core.build_config("http://af", core.Auth(), ["ns"], None, True, {"log": {"format": "text"}})
        self.assertEqual(c["log"]["format"], "json")

    def test_missing_url_and_namespace_name_the_argument(self):
        with self.assertRaisesRegex(core.ConfigError, "^airflow_url"):
            core.build_config("", core.Auth(), ["ns"], None, True)
        with self.assertRaisesRegex(core.ConfigError, "^namespaces"):
            core.build_config("http://af", core.Auth(), [], None, True)

    def test_secrets_in_the_mapping_are_refused(self):
        with self.assertRaisesRegex(core.ConfigError, "airflow.auth.password"):
            core.build_config("http://af", core.Auth(), ["ns"], None, True, {"airflow": {"auth": {"password": "x"}}})

    def test_mwaa_has_no_url(self):
        auth = core.auth_from_connection("aws", None, None, None, {"mwaa_environment": "e"}, 2)
        c = core.build_config("http://ignored", auth, ["ns"], None, True)
        self.assertNotIn("url", c["airflow"])
        self.assertEqual(c["airflow"]["mwaa"], {"environment": "e"})


class OwnNamespaceTest(unittest.TestCase):
    def test_service_account_mount_first_then_configuration(self):
        with tempfile.TemporaryDirectory() as d:
            mount = Path(d) / "namespace"
            self.assertEqual(core.own_namespace("from-conf", mount), "from-conf")
            mount.write_text("worker-ns\n")
            self.assertEqual(core.own_namespace("from-conf", mount), "worker-ns")


CYCLE = {"time": "t", "level": "INFO", "msg": "cycle", "pods": 4, "reap": 2, "keep": 2, "skip": 0,
         "deleted": 2, "apiCalls": 5, "duration": "12ms"}


class SummaryTest(unittest.TestCase):
    def test_cycle_line_becomes_the_summary(self):
        self.assertEqual(core.summary_of(CYCLE), {"pods": 4, "reaped": 2, "kept": 2, "skipped": 0, "deleted": 2,
                                                  "calls": 5, "would_delete": 0, "dry_run": False,
                                                  "duration": "12ms"})

    def test_dry_run_cycle_reports_would_delete(self):
        s = core.summary_of(dict(CYCLE, deleted=0, wouldDelete=2))
        self.assertEqual((s["dry_run"], s["would_delete"], s["deleted"]), (True, 2, 0))

    def test_other_lines_are_no_summary(self):
        self.assertIsNone(core.summary_of({"msg": "deleted", "pod": "ns/p"}))

    def test_render_quotes_values_with_spaces(self):
        level, text = core.render({"time": "t", "level": "WARN", "msg": "would delete", "pod": "ns/p",
                                   "detail": "ti success"})
        self.assertEqual((level, text), (logging.WARNING, 'would delete pod=ns/p detail="ti success"'))


# A stand-in for the binary: prints what FAKE_LINES holds and exits
# FAKE_EXIT; writes its arguments, the config file and its KPO_REAPER_*
# environment to FAKE_SEEN.
FAKE = textwrap.dedent("""\
    #!{python}
    import json, os, sys
    cfg = sys.argv[sys.argv.index("--config") + 1]
    with open(os.environ["FAKE_SEEN"], "w") as f:
        json.dump({{"argv": sys.argv[1:], "config": json.load(open(cfg)),
                   "mode": oct(os.stat(cfg).st_mode & 0o777),
                   "env": {{k: v for k, v in os.environ.items() if k.startswith("KPO_REAPER_")}}}}, f)
    sys.stderr.write(os.environ["FAKE_LINES"])
    sys.exit(int(os.environ["FAKE_EXIT"]))
""")


class RunOnceTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.addCleanup(self.dir.cleanup)
        self.bin = Path(self.dir.name) / "kpo-reaper"
        self.bin.write_text(FAKE.format(python=sys.executable))
        self.bin.chmod(self.bin.stat().st_mode | stat.S_IXUSR)
        self.seen = Path(self.dir.name) / "seen.json"
        self.log = logging.getLogger("test-run-once")

    def run_fake(self, lines, code, secret_env=None):
        env = dict(os.environ, FAKE_SEEN=str(self.seen), FAKE_EXIT=str(code),
                   FAKE_LINES="".join(l if isinstance(l, str) else json.dumps(l) + "\n" for l in lines),
                   KPO_REAPER_REAPER_DRYRUN="false")
        cfg = core.build_config("http://af", core.Auth(), ["ns"], None, True)
        with self.assertLogs(self.log, level="DEBUG") as logs:
            try:
                return core.run_once(cfg, secret_env, self.bin, log=self.log, env=env), logs
            except core.ReaperFailed as e:
                return e, logs

    def test_success_streams_lines_and_returns_the_summary(self):
        deleted = {"time": "t", "level": "INFO", "msg": "deleted", "pod": "ns/z"}
        got, logs = self.run_fake([deleted, CYCLE], 0, {"KPO_REAPER_AIRFLOW_AUTH_PASSWORD": "pw"})
        self.assertEqual(got["deleted"], 2)
        self.assertEqual(got["calls"], 5)
        self.assertEqual(logs.output[0], "INFO:test-run-once:deleted pod=ns/z")
        seen = json.loads(self.seen.read_text())
        self.assertEqual(seen["argv"][:3], ["run", "--once", "--config"])
        self.assertEqual(seen["config"]["reaper"]["dryRun"], True)
        self.assertEqual(seen["mode"], "0o600")
        # The secret comes through; an inherited KPO_REAPER_ variable
        # cannot override the task's arguments.
        self.assertEqual(seen["env"], {"KPO_REAPER_AIRFLOW_AUTH_PASSWORD": "pw"})
        self.assertNotIn("pw", "".join(logs.output))

    def test_cycle_failed_fails_with_the_reapers_error(self):
        failed = dict(CYCLE, level="ERROR", msg="cycle failed", deleted=0, error="airflow unreachable")
        got, logs = self.run_fake([failed, "error: cycle failed closed: airflow unreachable\n"], 1)
        self.assertIsInstance(got, core.ReaperFailed)
        self.assertEqual(got.exit_code, 1)
        self.assertIn("nothing was deleted", str(got))
        self.assertIn("cycle failed closed: airflow unreachable", str(got))
        self.assertIn("ERROR:test-run-once:error: cycle failed closed: airflow unreachable", logs.output)

    def test_failed_after_deletes_fails_and_says_pods_were_deleted(self):
        got, _ = self.run_fake(["error: failed closed after deleting ns/z\n"], 3)
        self.assertIsInstance(got, core.ReaperFailed)
        self.assertEqual(got.exit_code, 3)
        self.assertIn("deleted pods, then failed closed", str(got))
        self.assertIn("ns/z", str(got))

    def test_every_line_of_a_multi_line_error_is_in_the_failure(self):
        got, _ = self.run_fake(["error: cycle failed closed: start-up self-check:\n",
                                "delete pods in namespace ns: not allowed\n",
                                "create events in namespace ns: not allowed\n"], 1)
        self.assertIn("start-up self-check:; delete pods in namespace ns: not allowed; "
                      "create events in namespace ns: not allowed", str(got))

    def test_the_json_final_error_is_the_failure(self):
        # In JSON log mode (which the operator sets) the reaper's last line is
        # {"msg": "exiting", "error": ...}, one line per cause inside it.
        exiting = {"time": "2026-12-07T10:00:00Z", "level": "ERROR", "msg": "exiting", "exitCode": 1,
                   "error": "cycle failed closed: start-up self-check:\ncreate events in namespace ns: not allowed"}
        got, _ = self.run_fake([exiting], 1)
        self.assertIsInstance(got, core.ReaperFailed)
        self.assertIn("start-up self-check:; create events in namespace ns: not allowed", str(got))

    def test_refused_configuration_fails(self):
        got, _ = self.run_fake(["error: reaper.interval: must be at least 1s\n"], 2)
        self.assertIsInstance(got, core.ReaperFailed)
        self.assertIn("reaper.interval", str(got))

    def test_exit_zero_without_summary_fails(self):
        got, _ = self.run_fake([{"level": "INFO", "msg": "starting"}], 0)
        self.assertIsInstance(got, core.ReaperFailed)


if __name__ == "__main__":
    unittest.main()
