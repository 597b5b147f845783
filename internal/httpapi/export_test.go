package httpapi

import "bytes"

// IdempotencyCacheHolds reports whether an entry of the API's idempotency
// cache holds b anywhere: in its key, its fingerprint or its response's
// headers and body.
func IdempotencyCacheHolds(a *API, b []byte) bool {
	c := a.s.idem
	c.mu.Lock()
	defer c.mu.Unlock()
	for el := c.lru.Front(); el != nil; el = el.Next() {
		e := el.Value.(*idemEntry)
		if bytes.Contains([]byte(e.key), b) || bytes.Contains(e.fp[:], b) {
			return true
		}
		if e.resp == nil {
			continue
		}
		if bytes.Contains(e.resp.body, b) {
			return true
		}
		for k, vs := range e.resp.header {
			for _, v := range append(vs, k) {
				if bytes.Contains([]byte(v), b) {
					return true
				}
			}
		}
	}
	return false
}
