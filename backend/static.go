package backend

import (
	"embed"
	"io/fs"
	"net/http"
	"path"
	"strings"
)

// webdist holds the built front end (npm run build writes it; see
// web/README.md). A clean clone holds only placeholder.html, served when
// the UI was not built.
//
//go:embed all:webdist
var webdist embed.FS

func staticHandler() http.Handler {
	root, _ := fs.Sub(webdist, "webdist")
	_, err := fs.Stat(root, "index.html")
	built := err == nil
	files := http.FileServerFS(root)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := path.Clean("/" + r.URL.Path)
		if !built {
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			b, _ := fs.ReadFile(root, "placeholder.html")
			_, _ = w.Write(b)
			return
		}
		if strings.HasPrefix(p, "/assets/") {
			// Vite names assets by content hash.
			w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
			files.ServeHTTP(w, r)
			return
		}
		if _, err := fs.Stat(root, strings.TrimPrefix(p, "/")); err != nil || p == "/" {
			// Deep links (every view is a URL) all load the app.
			w.Header().Set("Cache-Control", "no-cache")
			http.ServeFileFS(w, r, root, "index.html")
			return
		}
		files.ServeHTTP(w, r)
	})
}
