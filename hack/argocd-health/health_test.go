package health

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	lua "github.com/yuin/gopher-lua"
	"sigs.k8s.io/yaml"
)

// configRoot is where the health scripts live, relative to this directory.
var configRoot = filepath.Join("..", "..", "config", "argocd")

// testFile is Argo CD's health_test.yaml format (resource_customizations).
type testFile struct {
	Tests []testCase `json:"tests"`
}

type testCase struct {
	HealthStatus Status `json:"healthStatus"`
	InputPath    string `json:"inputPath"`
}

// suite is one <group>/<Kind>/ folder: health.lua plus health_test.yaml.
type suite struct {
	dir    string
	script string
	tests  []testCase
}

func findSuites(t *testing.T) []suite {
	t.Helper()
	var suites []suite
	err := filepath.WalkDir(configRoot, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || d.Name() != "health_test.yaml" {
			return nil
		}
		dir := filepath.Dir(path)
		raw, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		var tf testFile
		if err := yaml.UnmarshalStrict(raw, &tf); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		if len(tf.Tests) == 0 {
			return fmt.Errorf("%s: no tests", path)
		}
		script, err := os.ReadFile(filepath.Join(dir, "health.lua"))
		if err != nil {
			return err
		}
		suites = append(suites, suite{dir: dir, script: string(script), tests: tf.Tests})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(suites) == 0 {
		t.Fatalf("no health_test.yaml under %s", configRoot)
	}
	return suites
}

func loadObject(path string) (map[string]any, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var obj map[string]any
	if err := yaml.Unmarshal(raw, &obj); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return obj, nil
}

// check runs one test case with the given libraries and says how it differs
// from what the test expects.
func check(s suite, tc testCase, libs Libs) error {
	obj, err := loadObject(filepath.Join(s.dir, tc.InputPath))
	if err != nil {
		return err
	}
	got, err := Eval(s.script, obj, libs)
	if err != nil {
		return fmt.Errorf("health.lua failed: %w", err)
	}
	if got != tc.HealthStatus {
		return fmt.Errorf("got {status: %q, message: %q}, want {status: %q, message: %q}",
			got.Status, got.Message, tc.HealthStatus.Status, tc.HealthStatus.Message)
	}
	return nil
}

func suiteName(s suite) string {
	rel, err := filepath.Rel(configRoot, s.dir)
	if err != nil {
		return s.dir
	}
	return filepath.ToSlash(rel)
}

// TestHealthScripts runs every health_test.yaml case, under each set of
// libraries, and compares status and message exactly.
func TestHealthScripts(t *testing.T) {
	for _, s := range findSuites(t) {
		t.Run(suiteName(s), func(t *testing.T) {
			for _, tc := range s.tests {
				name := strings.TrimSuffix(filepath.Base(tc.InputPath), filepath.Ext(tc.InputPath))
				for _, libs := range []Libs{Strict, ArgoCD, OpenLibs} {
					t.Run(name+"/"+libs.String(), func(t *testing.T) {
						if err := check(s, tc, libs); err != nil {
							t.Errorf("%s: %v", tc.InputPath, err)
						}
					})
				}
			}
		})
	}
}

// TestEveryFixtureIsUsed keeps testdata/ and health_test.yaml in step.
func TestEveryFixtureIsUsed(t *testing.T) {
	for _, s := range findSuites(t) {
		used := map[string]bool{}
		for _, tc := range s.tests {
			used[filepath.Clean(tc.InputPath)] = true
		}
		files, err := filepath.Glob(filepath.Join(s.dir, "testdata", "*.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		var unused []string
		for _, f := range files {
			rel, _ := filepath.Rel(s.dir, f)
			if !used[rel] {
				unused = append(unused, rel)
			}
		}
		sort.Strings(unused)
		if len(unused) > 0 {
			t.Errorf("%s: fixtures no test uses: %v", suiteName(s), unused)
		}
	}
}

// TestWrongExpectationFails makes sure a wrong expected status or message is
// reported, so a green run means the scripts really match.
func TestWrongExpectationFails(t *testing.T) {
	for _, s := range findSuites(t) {
		tc := s.tests[0]
		wrongStatus := tc
		wrongStatus.HealthStatus.Status = "Unknown"
		wrongMessage := tc
		wrongMessage.HealthStatus.Message += "!"
		for _, bad := range []testCase{wrongStatus, wrongMessage} {
			if err := check(s, bad, Strict); err == nil {
				t.Errorf("%s: expecting %+v for %s passed", suiteName(s), bad.HealthStatus, tc.InputPath)
			}
		}
	}
}

// TestStrictHasNoLibraries checks that the strict state really lacks the
// libraries a script from argocd-cm must not rely on, and that a script using
// one fails there.
func TestStrictHasNoLibraries(t *testing.T) {
	probe := `return {status = "Healthy", message = type(string) .. type(math) .. type(table) .. type(os) .. type(io)}`
	got, err := Eval(probe, map[string]any{}, Strict)
	if err != nil {
		t.Fatal(err)
	}
	if got.Message != "nilnilnilnilnil" {
		t.Errorf("strict state has libraries: %q", got.Message)
	}
	_, err = Eval(`return {status = string.upper("healthy")}`, map[string]any{}, Strict)
	var apiErr *lua.ApiError
	if !errors.As(err, &apiErr) {
		t.Errorf("string.upper ran in the strict state: %v", err)
	}
	// `("x"):upper()` must fail too: without the string library strings
	// have no methods.
	if _, err := Eval(`local s = "x"; return {status = s:upper()}`, map[string]any{}, Strict); err == nil {
		t.Error("a string method ran in the strict state")
	}
}

// TestDecodeValue checks the object reaches Lua as Argo CD passes it.
func TestDecodeValue(t *testing.T) {
	obj, err := loadObject(filepath.Join(configRoot, "mlops.dev", "ModelDeployment", "testdata", "healthy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	probe := `local c = obj.status.conditions
return {status = "Healthy", message = tostring(#c) .. " " .. c[1].type .. " " .. tostring(obj.metadata.generation) .. " " .. type(obj.metadata.generation) .. " " .. tostring(obj.status.observedGeneration + 1) .. " " .. tostring(obj.spec.paused)}`
	got, err := Eval(probe, obj, Strict)
	if err != nil {
		t.Fatal(err)
	}
	if want := "3 Ready 3 number 4 nil"; got.Message != want {
		t.Errorf("got %q, want %q", got.Message, want)
	}
}
