// Command render renders a Helm chart as `helm template` does, for checking
// the chart where the helm binary cannot be installed. It uses the engine
// Helm 3 itself uses: Go's text/template with the sprig v3 function
// library, values parsed with sigs.k8s.io/yaml (YAML through JSON, so that
// numbers are float64 as in Helm), and Helm's own additions that the chart
// uses, written here after Helm's pkg/engine: include, tpl, required,
// toYaml, fromYaml, toJson, lookup (always empty, as in `helm template`),
// .Files.Get and .Files.Glob, .Release, .Chart, .Capabilities and
// .Template. Missing keys render as empty, as Helm's non-strict mode does.
//
//	render [-f values.yaml]... [--name RELEASE] [--namespace NS] CHART_DIR
//
// prints every rendered manifest (templates whose name starts with _ are
// helpers, NOTES.txt is skipped), each after "---" and a "# Source:" line,
// and exits 1 with the template's error on any failure (required, fail, a
// template error). Build offline with Debian's packages:
//
//	GO111MODULE=off GOPATH=/usr/share/gocode go run ./deploy/helm/render ...
package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"text/template"

	"github.com/Masterminds/sprig"
	"sigs.k8s.io/yaml"
)

type valueFiles []string

func (v *valueFiles) String() string     { return strings.Join(*v, ",") }
func (v *valueFiles) Set(s string) error { *v = append(*v, s); return nil }

// Files is the chart's non-template files by path relative to the chart,
// as Helm's chart.Files.
type Files map[string][]byte

// Get returns a file's content, or "" when there is none (as Helm).
func (f Files) Get(name string) string { return string(f[name]) }

// Glob returns the files whose path matches pattern (path.Match syntax;
// Helm's gobwas/glob also lets ** cross directories, which the chart does
// not use).
func (f Files) Glob(pattern string) Files {
	out := Files{}
	for name, content := range f {
		if ok, _ := path.Match(pattern, name); ok {
			out[name] = content
		}
	}
	return out
}

// mergeValues merges src into dst: maps key by key, anything else replaced,
// as Helm merges -f files over the chart's values.yaml.
func mergeValues(dst, src map[string]interface{}) map[string]interface{} {
	for k, v := range src {
		if srcMap, ok := v.(map[string]interface{}); ok {
			if dstMap, ok := dst[k].(map[string]interface{}); ok {
				dst[k] = mergeValues(dstMap, srcMap)
				continue
			}
		}
		dst[k] = v
	}
	return dst
}

func readValues(file string) (map[string]interface{}, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	values := map[string]interface{}{}
	if err := yaml.Unmarshal(data, &values); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return values, nil
}

// toYAML is Helm's toYaml: the YAML of v without its final newline, or ""
// when v cannot be marshalled.
func toYAML(v interface{}) string {
	data, err := yaml.Marshal(v)
	if err != nil {
		return ""
	}
	return strings.TrimSuffix(string(data), "\n")
}

// fromYAML is Helm's fromYaml: a map, with the error under "Error".
func fromYAML(s string) map[string]interface{} {
	m := map[string]interface{}{}
	if err := yaml.Unmarshal([]byte(s), &m); err != nil {
		m["Error"] = err.Error()
	}
	return m
}

func required(warn string, val interface{}) (interface{}, error) {
	if val == nil {
		return val, fmt.Errorf("%s", warn)
	}
	if s, ok := val.(string); ok && s == "" {
		return val, fmt.Errorf("%s", warn)
	}
	return val, nil
}

func run() error {
	var files valueFiles
	flag.Var(&files, "f", "a values file merged over the chart's values.yaml (repeatable)")
	name := flag.String("name", "release-name", "the release name")
	namespace := flag.String("namespace", "default", "the release namespace")
	flag.Parse()
	if flag.NArg() != 1 {
		return fmt.Errorf("usage: render [-f values.yaml]... [--name NAME] [--namespace NS] CHART_DIR")
	}
	chartDir := flag.Arg(0)

	chartMeta, err := readValues(filepath.Join(chartDir, "Chart.yaml"))
	if err != nil {
		return err
	}
	values, err := readValues(filepath.Join(chartDir, "values.yaml"))
	if err != nil {
		return err
	}
	for _, f := range files {
		override, err := readValues(f)
		if err != nil {
			return err
		}
		values = mergeValues(values, override)
	}

	chartFiles := Files{}
	templates := map[string]string{}
	err = filepath.Walk(chartDir, func(p string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(chartDir, p)
		rel = filepath.ToSlash(rel)
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if strings.HasPrefix(rel, "templates/") {
			templates[rel] = string(data)
		} else if rel != "Chart.yaml" && rel != "values.yaml" {
			chartFiles[rel] = data
		}
		return nil
	})
	if err != nil {
		return err
	}

	chartName, _ := chartMeta["name"].(string)
	top := map[string]interface{}{
		"Values": values,
		"Release": map[string]interface{}{
			"Name": *name, "Namespace": *namespace, "Service": "Helm",
			"IsInstall": true, "IsUpgrade": false, "Revision": 1,
		},
		"Chart": map[string]interface{}{
			"Name": chartName, "Version": chartMeta["version"],
			"AppVersion": chartMeta["appVersion"], "Description": chartMeta["description"],
		},
		"Capabilities": map[string]interface{}{
			"KubeVersion": map[string]interface{}{
				"Version": "v1.30.0", "GitVersion": "v1.30.0", "Major": "1", "Minor": "30",
			},
		},
		"Files": chartFiles,
	}

	root := template.New(chartName).Option("missingkey=zero")
	funcs := sprig.TxtFuncMap()
	// Helm removes these: a chart must not read the environment.
	delete(funcs, "env")
	delete(funcs, "expandenv")
	funcs["toYaml"] = toYAML
	funcs["fromYaml"] = fromYAML
	funcs["required"] = required
	funcs["lookup"] = func(string, string, string, string) (map[string]interface{}, error) {
		return map[string]interface{}{}, nil
	}
	funcs["include"] = func(name string, data interface{}) (string, error) {
		var buf bytes.Buffer
		err := root.ExecuteTemplate(&buf, name, data)
		return buf.String(), err
	}
	funcs["tpl"] = func(text string, data interface{}) (string, error) {
		t, err := root.Clone()
		if err != nil {
			return "", err
		}
		t, err = t.New("tpl").Parse(text)
		if err != nil {
			return "", err
		}
		var buf bytes.Buffer
		err = t.Execute(&buf, data)
		return strings.ReplaceAll(buf.String(), "<no value>", ""), err
	}
	root.Funcs(funcs)

	names := make([]string, 0, len(templates))
	for n := range templates {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if _, err := root.New(chartName + "/" + n).Parse(templates[n]); err != nil {
			return err
		}
	}

	var out bytes.Buffer
	for _, n := range names {
		base := path.Base(n)
		if strings.HasPrefix(base, "_") || base == "NOTES.txt" {
			continue
		}
		full := chartName + "/" + n
		vals := map[string]interface{}{}
		for k, v := range top {
			vals[k] = v
		}
		vals["Template"] = map[string]interface{}{
			"Name": full, "BasePath": chartName + "/templates",
		}
		var buf bytes.Buffer
		if err := root.ExecuteTemplate(&buf, full, vals); err != nil {
			return err
		}
		rendered := strings.ReplaceAll(buf.String(), "<no value>", "")
		if strings.TrimSpace(rendered) == "" {
			continue
		}
		fmt.Fprintf(&out, "---\n# Source: %s\n%s\n", full, strings.TrimSpace(rendered))
	}
	_, err = os.Stdout.Write(out.Bytes())
	return err
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "render: %v\n", err)
		os.Exit(1)
	}
}
