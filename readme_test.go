package mqttws_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// goBlock matches a Go code block of a Markdown file.
var goBlock = regexp.MustCompile("(?s)```go\n(.*?)```")

// TestREADMEGoSnippetsAreCompiledExamples: every Go block of README.md is
// the import block and the body of an Example function somewhere in the
// repository (compiled by go test in its module), or the http.Server
// settings that ExampleHandler uses, so that what users copy compiles.
func TestREADMEGoSnippetsAreCompiledExamples(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	examples := exampleSnippets(t)
	blocks := goBlock.FindAllStringSubmatch(string(readme), -1)
	if len(blocks) == 0 {
		t.Fatal("README.md has no Go block")
	}
	for i, b := range blocks {
		block := strings.TrimSpace(b[1])
		found := false
		for _, ex := range examples {
			if block == ex.snippet || strings.Contains(ex.body, block) {
				found = true
				break
			}
		}
		if !found {
			t.Errorf("README.md Go block %d is not the code of any Example function (imports, blank line, body; or a part of a body):\n%s", i+1, block)
		}
	}
}

type example struct {
	name    string
	snippet string // the file's import block, a blank line, the body
	body    string
}

// exampleSnippets returns every Example function of the repository's test
// files as it would appear in the README.
func exampleSnippets(t *testing.T) []example {
	t.Helper()
	var out []example
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "node_modules" || d.Name() == "testdata" || strings.HasPrefix(d.Name(), ".")) && path != "." {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, "_test.go") {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		fset := token.NewFileSet()
		f, err := parser.ParseFile(fset, path, src, parser.ParseComments)
		if err != nil {
			return err
		}
		imports := ""
		for _, decl := range f.Decls {
			if g, ok := decl.(*ast.GenDecl); ok && g.Tok == token.IMPORT {
				imports = string(src[fset.Position(g.Pos()).Offset:fset.Position(g.End()).Offset])
			}
		}
		for _, decl := range f.Decls {
			fn, ok := decl.(*ast.FuncDecl)
			if !ok || !strings.HasPrefix(fn.Name.Name, "Example") || fn.Body == nil {
				continue
			}
			inner := string(src[fset.Position(fn.Body.Lbrace).Offset+1 : fset.Position(fn.Body.Rbrace).Offset])
			body := dedent(inner)
			out = append(out, example{
				name:    path + ":" + fn.Name.Name,
				snippet: strings.TrimSpace(imports + "\n\n" + body),
				body:    body,
			})
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// dedent removes one tab from the start of every line and trims the ends.
func dedent(s string) string {
	lines := strings.Split(strings.Trim(s, "\n"), "\n")
	for i, l := range lines {
		lines[i] = strings.TrimPrefix(l, "\t")
	}
	return strings.TrimSpace(strings.Join(lines, "\n"))
}
