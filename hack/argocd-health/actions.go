package health

// Registration of the resource actions under config/argocd, shared by the
// fixture tests and cmd/action (which the end-to-end tests run on live
// objects).

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"

	appv1 "github.com/argoproj/argo-cd/v3/pkg/apis/application/v1alpha1"
	argolua "github.com/argoproj/argo-cd/v3/util/lua"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

// Actions is one <group>/<Kind>/actions folder registered as argocd-cm
// registers it: resource.customizations.actions.<group_Kind>, a YAML of
// discovery.lua and the definitions.
type Actions struct {
	Key   string
	VM    argolua.VM
	Names []string
}

// LoadActions registers the actions folder `dir` (…/<group>/<Kind>/actions)
// under the key <group>/<Kind>, relative to `root`.
func LoadActions(root, dir string) (Actions, error) {
	kindDir, err := filepath.Rel(root, filepath.Dir(dir))
	if err != nil {
		return Actions{}, err
	}
	discovery, err := os.ReadFile(filepath.Join(dir, "discovery.lua"))
	if err != nil {
		return Actions{}, err
	}
	actions := appv1.ResourceActions{ActionDiscoveryLua: string(discovery)}
	defs, err := filepath.Glob(filepath.Join(dir, "*", "action.lua"))
	if err != nil {
		return Actions{}, err
	}
	var names []string
	for _, def := range defs {
		script, err := os.ReadFile(def)
		if err != nil {
			return Actions{}, err
		}
		name := filepath.Base(filepath.Dir(def))
		names = append(names, name)
		actions.Definitions = append(actions.Definitions, appv1.ResourceActionDefinition{Name: name, ActionLua: string(script)})
	}
	sort.Strings(names)
	value, err := yaml.Marshal(actions)
	if err != nil {
		return Actions{}, err
	}
	key := filepath.ToSlash(kindDir)
	return Actions{
		Key:   key,
		VM:    argolua.VM{ResourceOverrides: map[string]appv1.ResourceOverride{key: {Actions: string(value)}}},
		Names: names,
	}, nil
}

// Enabled runs discovery as the Argo CD API server does: the enabled
// actions and every action offered, sorted.
func (a Actions) Enabled(obj *unstructured.Unstructured) ([]string, []string, error) {
	scripts, err := a.VM.GetResourceActionDiscovery(obj)
	if err != nil {
		return nil, nil, err
	}
	found, err := a.VM.ExecuteResourceActionDiscovery(obj, scripts)
	if err != nil {
		return nil, nil, err
	}
	var on, all []string
	for _, action := range found {
		all = append(all, action.Name)
		if !action.Disabled {
			on = append(on, action.Name)
		}
	}
	sort.Strings(on)
	sort.Strings(all)
	return on, all, nil
}

// Run runs one action and returns the object Argo CD would patch to.
func (a Actions) Run(obj *unstructured.Unstructured, action string) (map[string]any, error) {
	def, err := a.VM.GetResourceAction(obj, action)
	if err != nil {
		return nil, err
	}
	if def.ActionLua == "" {
		return nil, fmt.Errorf("no action %q registered", action)
	}
	out, err := a.VM.ExecuteResourceAction(obj.DeepCopy(), def.ActionLua, nil)
	if err != nil {
		return nil, err
	}
	if len(out) != 1 || out[0].K8SOperation != argolua.PatchOperation {
		return nil, fmt.Errorf("expected one patch of the object, got %+v", out)
	}
	return out[0].UnstructuredObj.Object, nil
}
