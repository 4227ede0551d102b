package options

import (
	"fmt"
	"net/url"
	"path"
	"strings"
)

// CheckPath reports whether p (the -path flag) is a URL path that both
// routers of the examples (http.ServeMux and go-chi/chi) match literally: it
// starts with /, is clean (no //, /./, /../ or trailing /), and holds only
// characters a URL path carries unescaped, which leaves out the routers'
// pattern syntax ({, }, *). A space would be taken by ServeMux for a method
// separator and makes chi panic; ? or # would never reach the router, since
// they start the query or the fragment.
func CheckPath(p string) error {
	if !strings.HasPrefix(p, "/") {
		return fmt.Errorf("-path %q: want an absolute URL path, such as /mqtt", p)
	}
	if i := strings.IndexAny(p, "?#"); i >= 0 {
		return fmt.Errorf("-path %q: %q starts the query or fragment of a URL, not part of its path: want a path such as /mqtt", p, p[i])
	}
	if (&url.URL{Path: p}).EscapedPath() != p {
		return fmt.Errorf("-path %q: want a URL path of letters, digits and -._~$&+,;=:@/ only, such as /mqtt (no spaces, no characters to escape)", p)
	}
	if path.Clean(p) != p {
		return fmt.Errorf("-path %q: want a clean path, such as %s (no //, /./, /../ or trailing /)", p, path.Clean(p))
	}
	if p == HealthPath || p == ReadyPath {
		return fmt.Errorf("-path %q is taken by the health checks (%s, %s): want another path, such as /mqtt", p, HealthPath, ReadyPath)
	}
	return nil
}
