//go:build ignore

// Command index turns a folder of OSV JSON files (the data/osv folder of
// the golang.org/x/vulndb module, which the Go module proxy serves) into
// the v1 Go vulnerability database layout that `govulncheck -db file://…`
// reads: index/db.json, index/modules.json and ID/<id>.json. It exists
// because vuln.go.dev is not reachable from CI while the module proxy is.
//
//	go run deploy/vulndb/index.go -vulns <vulndb>/data/osv -out <dir>
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

type osvEntry struct {
	ID       string    `json:"id"`
	Modified time.Time `json:"modified"`
	Affected []struct {
		Package struct {
			Name      string `json:"name"`
			Ecosystem string `json:"ecosystem"`
		} `json:"package"`
	} `json:"affected"`
}

type moduleVuln struct {
	ID       string    `json:"id"`
	Modified time.Time `json:"modified"`
}

type moduleMeta struct {
	Path  string       `json:"path"`
	Vulns []moduleVuln `json:"vulns"`
}

func main() {
	vulns := flag.String("vulns", "", "folder of OSV JSON files")
	out := flag.String("out", "", "database folder to write")
	flag.Parse()
	if *vulns == "" || *out == "" {
		log.Fatal("usage: index -vulns DIR -out DIR")
	}
	if err := run(*vulns, *out); err != nil {
		log.Fatal(err)
	}
}

func run(vulnsDir, outDir string) error {
	files, err := filepath.Glob(filepath.Join(vulnsDir, "*.json"))
	if err != nil {
		return err
	}
	if len(files) == 0 {
		return fmt.Errorf("no OSV files in %s", vulnsDir)
	}
	for _, d := range []string{"index", "ID"} {
		if err := os.MkdirAll(filepath.Join(outDir, d), 0o755); err != nil {
			return err
		}
	}
	modules := map[string]*moduleMeta{}
	var newest time.Time
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		var e osvEntry
		if err := json.Unmarshal(b, &e); err != nil {
			return fmt.Errorf("%s: %w", f, err)
		}
		if e.ID == "" || !strings.HasPrefix(filepath.Base(f), e.ID) {
			return fmt.Errorf("%s: id %q does not match the file name", f, e.ID)
		}
		if e.Modified.After(newest) {
			newest = e.Modified
		}
		seen := map[string]bool{}
		for _, a := range e.Affected {
			p := a.Package.Name
			if a.Package.Ecosystem != "Go" || p == "" || seen[p] {
				continue
			}
			seen[p] = true
			m := modules[p]
			if m == nil {
				m = &moduleMeta{Path: p}
				modules[p] = m
			}
			m.Vulns = append(m.Vulns, moduleVuln{ID: e.ID, Modified: e.Modified})
		}
		if err := os.WriteFile(filepath.Join(outDir, "ID", e.ID+".json"), b, 0o644); err != nil {
			return err
		}
	}
	list := make([]*moduleMeta, 0, len(modules))
	for _, m := range modules {
		sort.Slice(m.Vulns, func(i, j int) bool { return m.Vulns[i].ID < m.Vulns[j].ID })
		list = append(list, m)
	}
	sort.Slice(list, func(i, j int) bool { return list[i].Path < list[j].Path })
	write := func(name string, v any) error {
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(outDir, "index", name), b, 0o644)
	}
	if err := write("modules.json", list); err != nil {
		return err
	}
	if err := write("db.json", map[string]time.Time{"modified": newest}); err != nil {
		return err
	}
	log.Printf("vulndb: %d entries, %d modules, modified %s", len(files), len(list), newest.Format(time.RFC3339))
	return nil
}
