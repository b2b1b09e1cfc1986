package health

// The Argo CD resource actions under config/argocd (<group>/<Kind>/actions:
// discovery.lua and <action>/action.lua), registered as argocd-cm does
// (actions.go), found with VM.GetResourceActionDiscovery and
// VM.GetResourceAction and run with Argo CD's own Execute functions.

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

// now marks a value that must be the current Unix time (retry).
const now = "<now>"

type actionFile struct {
	DiscoveryTests []struct {
		InputPath string   `json:"inputPath"`
		Enabled   []string `json:"enabled"`
	} `json:"discoveryTests"`
	ActionTests []struct {
		Action    string         `json:"action"`
		InputPath string         `json:"inputPath"`
		Change    map[string]any `json:"change"`
	} `json:"actionTests"`
}

type actionSuite struct {
	Actions
	dir   string
	tests actionFile
}

// findActionSuites registers every actions folder as argocd-cm would.
func findActionSuites(t *testing.T) []actionSuite {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(configRoot, "*", "*", "actions", "action_test.yaml"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no actions/action_test.yaml under %s (%v)", configRoot, err)
	}
	var suites []actionSuite
	for _, path := range paths {
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var tf actionFile
		if err := yaml.UnmarshalStrict(raw, &tf); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		actions, err := LoadActions(configRoot, filepath.Dir(path))
		if err != nil {
			t.Fatal(err)
		}
		suites = append(suites, actionSuite{Actions: actions, dir: filepath.Dir(path), tests: tf})
	}
	return suites
}

func (s actionSuite) load(t *testing.T, path string) *unstructured.Unstructured {
	t.Helper()
	obj, err := loadObject(filepath.Join(s.dir, path))
	if err != nil {
		t.Fatal(err)
	}
	return obj
}

// merge applies change to base as a JSON merge patch would.
func merge(base, change map[string]any) map[string]any {
	out := map[string]any{}
	for k, v := range base {
		out[k] = v
	}
	for k, v := range change {
		if sub, ok := v.(map[string]any); ok {
			if old, ok := out[k].(map[string]any); ok {
				out[k] = merge(old, sub)
				continue
			}
			out[k] = merge(map[string]any{}, sub)
			continue
		}
		out[k] = v
	}
	return out
}

// settleNow replaces, in got, each value the expectation marks "<now>" by
// the marker, after checking it is the current Unix time.
func settleNow(got, want map[string]any) error {
	for k, w := range want {
		switch w := w.(type) {
		case string:
			if w != now {
				continue
			}
			text, _ := got[k].(string)
			secs, err := strconv.ParseInt(text, 10, 64)
			if err != nil || secs < time.Now().Unix()-60 || secs > time.Now().Unix()+60 {
				return fmt.Errorf("%s = %q, not the current Unix time", k, text)
			}
			got[k] = now
		case map[string]any:
			sub, _ := got[k].(map[string]any)
			if sub != nil {
				if err := settleNow(sub, w); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func checkAction(s actionSuite, action string, obj *unstructured.Unstructured, change map[string]any) error {
	got, err := s.Run(obj, action)
	if err != nil {
		return err
	}
	want := merge(obj.Object, change)
	if err := settleNow(got, want); err != nil {
		return err
	}
	// Compared as JSON values: YAML decodes integers, Lua returns numbers.
	got, want = normalized(got), normalized(want)
	if !reflect.DeepEqual(got, want) {
		g, _ := yaml.Marshal(got)
		w, _ := yaml.Marshal(want)
		return fmt.Errorf("got\n%s\nwant\n%s", g, w)
	}
	return nil
}

func normalized(v map[string]any) map[string]any {
	raw, err := json.Marshal(v)
	if err != nil {
		return v
	}
	var out map[string]any
	if err := json.Unmarshal(raw, &out); err != nil {
		return v
	}
	return out
}

// TestActions runs every action_test.yaml: which actions are enabled, and
// that each action changes exactly what its fixture says.
func TestActions(t *testing.T) {
	for _, s := range findActionSuites(t) {
		t.Run(s.Key, func(t *testing.T) {
			tested := map[string]bool{}
			for _, dt := range s.tests.DiscoveryTests {
				t.Run("discovery/"+strings.TrimSuffix(filepath.Base(dt.InputPath), ".yaml"), func(t *testing.T) {
					on, all, err := s.Enabled(s.load(t, dt.InputPath))
					if err != nil {
						t.Fatal(err)
					}
					if !reflect.DeepEqual(all, s.Names) {
						t.Errorf("discovery offers %v, the definitions are %v", all, s.Names)
					}
					want := append([]string(nil), dt.Enabled...)
					sort.Strings(want)
					if !reflect.DeepEqual(on, want) {
						t.Errorf("enabled %v, want %v", on, want)
					}
				})
			}
			for _, at := range s.tests.ActionTests {
				tested[at.Action] = true
				t.Run(at.Action, func(t *testing.T) {
					if err := checkAction(s, at.Action, s.load(t, at.InputPath), at.Change); err != nil {
						t.Errorf("%s on %s: %v", at.Action, at.InputPath, err)
					}
				})
			}
			for _, name := range s.Names {
				if !tested[name] {
					t.Errorf("action %s has no actionTests fixture", name)
				}
			}
		})
	}
}

// TestActionCheckFailsOnWrongExpectation keeps the harness honest.
func TestActionCheckFailsOnWrongExpectation(t *testing.T) {
	s := findActionSuites(t)[0]
	at := s.tests.ActionTests[0]
	obj := s.load(t, at.InputPath)
	for _, wrong := range []map[string]any{
		{},
		merge(at.Change, map[string]any{"spec": map[string]any{"paused": true}}),
	} {
		if err := checkAction(s, at.Action, obj, wrong); err == nil {
			t.Errorf("%s: a wrong expectation %v passed", at.Action, wrong)
		}
	}
}
