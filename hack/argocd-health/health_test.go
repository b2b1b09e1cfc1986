// Package health runs the Argo CD resource health scripts under
// config/argocd with Argo CD's own Lua package
// (github.com/argoproj/argo-cd/v3/util/lua), the code the application
// controller runs for a resource health check. A script is registered the
// way argocd-cm registers it (resource.customizations.health.<group_Kind>),
// looked up with VM.GetHealthScript and run with VM.ExecuteHealthLua.
package health

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	appv1 "github.com/argoproj/argo-cd/v3/pkg/apis/application/v1alpha1"
	argolua "github.com/argoproj/argo-cd/v3/util/lua"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

// configRoot is where the health scripts live, relative to this directory.
var configRoot = filepath.Join("..", "..", "config", "argocd")

// testFile is Argo CD's health_test.yaml format (resource_customizations).
type testFile struct {
	Tests []testCase `json:"tests"`
}

type status struct {
	Status  string `json:"status"`
	Message string `json:"message,omitempty"`
}

type testCase struct {
	HealthStatus status `json:"healthStatus"`
	InputPath    string `json:"inputPath"`
}

// suite is one <group>/<Kind>/ folder: health.lua plus health_test.yaml.
type suite struct {
	dir    string
	key    string // group/Kind, Argo CD's resource override key
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
		rel, err := filepath.Rel(configRoot, dir)
		if err != nil {
			return err
		}
		suites = append(suites, suite{dir: dir, key: filepath.ToSlash(rel), script: string(script), tests: tf.Tests})
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

func loadObject(path string) (*unstructured.Unstructured, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var obj map[string]any
	if err := yaml.Unmarshal(raw, &obj); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &unstructured.Unstructured{Object: obj}, nil
}

// check runs one test case through Argo CD's VM and says how the result
// differs from what the test expects.
func check(s suite, tc testCase, useOpenLibs bool) error {
	obj, err := loadObject(filepath.Join(s.dir, tc.InputPath))
	if err != nil {
		return err
	}
	// As argocd-cm registers it: resource.customizations.health.mlops.dev_ModelDeployment,
	// with resource.customizations.useOpenLibs.<key> unset (false) or true.
	vm := argolua.VM{ResourceOverrides: map[string]appv1.ResourceOverride{
		s.key: {HealthLua: s.script, UseOpenLibs: useOpenLibs},
	}}
	script, openLibs, err := vm.GetHealthScript(obj)
	if err != nil {
		return fmt.Errorf("GetHealthScript: %w", err)
	}
	if script != s.script {
		return fmt.Errorf("Argo CD did not pick the registered script for %s (key %s)", obj.GroupVersionKind(), s.key)
	}
	vm.UseOpenLibs = openLibs
	got, err := vm.ExecuteHealthLua(obj, script)
	if err != nil {
		return fmt.Errorf("health.lua failed: %w", err)
	}
	if got == nil {
		return fmt.Errorf("no health status")
	}
	if string(got.Status) != tc.HealthStatus.Status || got.Message != tc.HealthStatus.Message {
		return fmt.Errorf("got {status: %q, message: %q}, want {status: %q, message: %q}",
			got.Status, got.Message, tc.HealthStatus.Status, tc.HealthStatus.Message)
	}
	return nil
}

// TestHealthScripts runs every health_test.yaml case, as registered without
// and with useOpenLibs, and compares status and message exactly.
func TestHealthScripts(t *testing.T) {
	for _, s := range findSuites(t) {
		t.Run(s.key, func(t *testing.T) {
			for _, tc := range s.tests {
				name := strings.TrimSuffix(filepath.Base(tc.InputPath), filepath.Ext(tc.InputPath))
				for _, open := range []bool{false, true} {
					t.Run(fmt.Sprintf("%s/useOpenLibs=%t", name, open), func(t *testing.T) {
						if err := check(s, tc, open); err != nil {
							t.Errorf("%s: %v", tc.InputPath, err)
						}
					})
				}
			}
		})
	}
}

// TestCheckFailsOnWrongExpectation keeps the harness honest: a fixture with
// a wrong expected status or message must fail.
func TestCheckFailsOnWrongExpectation(t *testing.T) {
	s := findSuites(t)[0]
	tc := s.tests[0]
	for _, wrong := range []testCase{
		{HealthStatus: status{Status: "Unknown", Message: tc.HealthStatus.Message}, InputPath: tc.InputPath},
		{HealthStatus: status{Status: tc.HealthStatus.Status, Message: tc.HealthStatus.Message + "!"}, InputPath: tc.InputPath},
	} {
		if err := check(s, wrong, false); err == nil {
			t.Errorf("%s: a wrong expectation %+v passed", tc.InputPath, wrong.HealthStatus)
		}
	}
}
