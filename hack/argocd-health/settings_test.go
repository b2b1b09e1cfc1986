package health

// config/argocd/argocd-cm.yaml, the argocd-cm settings a ModelDeployment
// needs, generated from the Lua under config/argocd (BLESS=1 rewrites it)
// and read back by Argo CD's own settings code (util/settings): the health
// check and the actions are found for mlops.dev/ModelDeployment, and the
// ignoreResourceUpdates rule keeps Argo CD's default of skipping
// status-only updates for every other kind while letting a ModelDeployment's
// status through, so a changed health message is not held back.

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/argoproj/argo-cd/v3/common"
	appv1 "github.com/argoproj/argo-cd/v3/pkg/apis/application/v1alpha1"
	"github.com/argoproj/argo-cd/v3/util/argo/normalizers"
	"github.com/argoproj/argo-cd/v3/util/settings"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/kubernetes/fake"
	"sigs.k8s.io/yaml"
)

var argocdCM = filepath.Join(configRoot, "argocd-cm.yaml")

// ignoreStatusExceptModels ignores /status of every kind but
// ModelDeployments. A jq path expression, because an override for one
// kind adds to `all` and cannot take `/status` away again. It replaces
// both of Argo CD's defaults that ignore /status everywhere: in diffs
// (compareoptions' ignoreResourceStatusField, turned to none, whose
// ignoreDifferences also decide which updates are skipped) and in the
// ignoreResourceUpdates rule Argo CD's own argocd-cm ships for `all`.
const ignoreStatusExceptModels = `jqPathExpressions:
- select(.apiVersion | startswith("mlops.dev/") | not) | .status
`

const compareOptions = `ignoreResourceStatusField: none
`

// renderArgoCDCM builds the argocd-cm patch from the files under config/argocd.
func renderArgoCDCM(t *testing.T) []byte {
	t.Helper()
	dir := filepath.Join(configRoot, "mlops.dev", "ModelDeployment")
	healthLua, err := os.ReadFile(filepath.Join(dir, "health.lua"))
	if err != nil {
		t.Fatal(err)
	}
	actions, err := LoadActions(configRoot, filepath.Join(dir, "actions"))
	if err != nil {
		t.Fatal(err)
	}
	cm := map[string]any{
		"apiVersion": "v1",
		"kind":       "ConfigMap",
		"metadata": map[string]any{
			"name":   "argocd-cm",
			"labels": map[string]any{"app.kubernetes.io/part-of": "argocd"},
		},
		"data": map[string]any{
			"resource.customizations.health.mlops.dev_ModelDeployment":  string(healthLua),
			"resource.customizations.actions.mlops.dev_ModelDeployment": actions.VM.ResourceOverrides[actions.Key].Actions,
			"resource.customizations.ignoreResourceUpdates.all":         ignoreStatusExceptModels,
			"resource.customizations.ignoreDifferences.all":             ignoreStatusExceptModels,
			"resource.compareoptions":                                   compareOptions,
			"resource.ignoreResourceUpdatesEnabled":                     "true",
		},
	}
	out, err := yaml.Marshal(cm)
	if err != nil {
		t.Fatal(err)
	}
	header := "# Generated from config/argocd by hack/argocd-health (BLESS=1 go test ./...): do not edit.\n" +
		"# The argocd-cm settings a ModelDeployment needs (config/argocd/README.md):\n" +
		"#   kubectl -n argocd patch configmap argocd-cm --patch-file config/argocd/argocd-cm.yaml\n"
	return append([]byte(header), out...)
}

func TestArgoCDCMIsGenerated(t *testing.T) {
	want := renderArgoCDCM(t)
	if os.Getenv("BLESS") != "" {
		if err := os.WriteFile(argocdCM, want, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	got, err := os.ReadFile(argocdCM)
	if err != nil || string(got) != string(want) {
		t.Fatalf("%s is stale: run `cd hack/argocd-health && BLESS=1 go test ./...`", argocdCM)
	}
}

func settingsFrom(t *testing.T) *settings.SettingsManager {
	t.Helper()
	raw, err := os.ReadFile(argocdCM)
	if err != nil {
		t.Fatal(err)
	}
	var cm corev1.ConfigMap
	if err := yaml.UnmarshalStrict(raw, &cm); err != nil {
		t.Fatalf("%s: %v", argocdCM, err)
	}
	cm.Name, cm.Namespace = common.ArgoCDConfigMapName, "argocd"
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{
		Name: common.ArgoCDSecretName, Namespace: "argocd",
		Labels: map[string]string{"app.kubernetes.io/part-of": "argocd"},
	}}
	client := fake.NewClientset(&cm, secret)
	return settings.NewSettingsManager(context.Background(), client, "argocd")
}

func TestArgoCDSettingsReadTheSnippet(t *testing.T) {
	mgr := settingsFrom(t)
	overrides, err := mgr.GetResourceOverrides()
	if err != nil {
		t.Fatal(err)
	}
	md := overrides["mlops.dev/ModelDeployment"]
	if md.HealthLua == "" {
		t.Error("no health.lua for mlops.dev/ModelDeployment")
	}
	actions, err := md.GetActions()
	if err != nil || actions.ActionDiscoveryLua == "" || len(actions.Definitions) != 6 {
		t.Errorf("actions: %+v, %v", actions, err)
	}
	enabled, err := mgr.GetIsIgnoreResourceUpdatesEnabled()
	if err != nil || !enabled {
		t.Errorf("ignoreResourceUpdatesEnabled: %v, %v", enabled, err)
	}

	// What the application controller hashes to decide whether an update
	// may be skipped (ignoreResourceUpdates), and what it leaves out of a
	// diff (the overrides' ignoreDifferences): a ModelDeployment's status
	// counts for updates, every other kind's status is ignored in both.
	updates, err := mgr.GetIgnoreResourceUpdatesOverrides()
	if err != nil {
		t.Fatal(err)
	}
	for _, use := range []struct {
		name       string
		overrides  map[string]appv1.ResourceOverride
		modelKeeps bool
	}{
		{"resource updates", updates, true},
		{"diffs", overrides, true},
	} {
		normalizer, err := normalizers.NewIgnoreNormalizer(nil, use.overrides, normalizers.IgnoreNormalizerOpts{})
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			apiVersion, kind string
			keepsStatus      bool
		}{
			{"mlops.dev/v1alpha1", "ModelDeployment", use.modelKeeps},
			{"apps/v1", "Deployment", false},
			{"argoproj.io/v1alpha1", "Rollout", false},
		} {
			obj := &unstructured.Unstructured{Object: map[string]any{
				"apiVersion": c.apiVersion, "kind": c.kind,
				"metadata": map[string]any{"name": "m", "namespace": "ml"},
				"status":   map[string]any{"message": "2/2 pods available"},
			}}
			if err := normalizer.Normalize(obj); err != nil {
				t.Fatal(err)
			}
			_, kept := obj.Object["status"]
			if kept != c.keepsStatus {
				t.Errorf("%s, %s: status kept %v, want %v", use.name, c.kind, kept, c.keepsStatus)
			}
		}
	}
}
