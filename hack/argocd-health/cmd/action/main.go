// Command action runs one of config/argocd's resource actions on an object
// the way Argo CD does, for the end-to-end tests (tests/argocd_actions.rs):
//
//	go run ./cmd/action <config/argocd> <action> < object.json > patched.json
//
// With the action "discovery" it prints the enabled actions instead.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	health "model-operator.local/argocd-health"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "action:", err)
		os.Exit(1)
	}
}

func run() error {
	if len(os.Args) != 3 {
		return fmt.Errorf("usage: action <config/argocd> <action|discovery> < object.json")
	}
	root, name := os.Args[1], os.Args[2]
	raw, err := io.ReadAll(os.Stdin)
	if err != nil {
		return err
	}
	var obj map[string]any
	if err := json.Unmarshal(raw, &obj); err != nil {
		return err
	}
	u := &unstructured.Unstructured{Object: obj}
	gvk := u.GroupVersionKind()
	actions, err := health.LoadActions(root, filepath.Join(root, gvk.Group, gvk.Kind, "actions"))
	if err != nil {
		return err
	}
	var out any
	if name == "discovery" {
		out, _, err = actions.Enabled(u)
	} else {
		out, err = actions.Run(u, name)
	}
	if err != nil {
		return err
	}
	return json.NewEncoder(os.Stdout).Encode(out)
}
