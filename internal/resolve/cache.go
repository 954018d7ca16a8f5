package resolve

import "time"

// boundedCache remembers at most size entries; when full, the oldest entry
// goes. Entries may expire: label -> id mappings never change, so positive
// answers live until evicted, while "no such id" answers are kept only for
// a while, since the id may appear.
type boundedCache[K comparable, V any] struct {
	size    int
	entries map[K]cacheEntry[V]
	order   []K // insertion order, oldest first; may hold keys already replaced
}

type cacheEntry[V any] struct {
	val     V
	expires time.Time // zero: never
}

func newBoundedCache[K comparable, V any](size int) *boundedCache[K, V] {
	return &boundedCache[K, V]{size: size, entries: map[K]cacheEntry[V]{}}
}

func (c *boundedCache[K, V]) get(k K, now time.Time) (V, bool) {
	e, ok := c.entries[k]
	if !ok || (!e.expires.IsZero() && now.After(e.expires)) {
		var zero V
		return zero, false
	}
	return e.val, true
}

// put stores v; ttl 0 keeps it until evicted.
func (c *boundedCache[K, V]) put(k K, v V, now time.Time, ttl time.Duration) {
	var exp time.Time
	if ttl > 0 {
		exp = now.Add(ttl)
	}
	if _, ok := c.entries[k]; !ok {
		c.order = append(c.order, k)
	}
	c.entries[k] = cacheEntry[V]{val: v, expires: exp}
	for len(c.entries) > c.size && len(c.order) > 0 {
		oldest := c.order[0]
		c.order = c.order[1:]
		delete(c.entries, oldest)
	}
	if len(c.order) > 2*c.size {
		// Compact keys deleted behind the queue's back.
		kept := c.order[:0]
		for _, k := range c.order {
			if _, ok := c.entries[k]; ok {
				kept = append(kept, k)
			}
		}
		c.order = kept
	}
}

func (c *boundedCache[K, V]) len() int { return len(c.entries) }
