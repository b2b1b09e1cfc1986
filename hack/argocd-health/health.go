// Package health runs Argo CD resource health scripts (health.lua) the way
// the Argo CD application controller does, with the same Lua engine
// (github.com/yuin/gopher-lua), so that the scripts under config/argocd can be
// tested without Argo CD itself.
//
// What Argo CD does (util/lua/lua.go, VM.runLua): a script registered in
// argocd-cm runs in lua.NewState(lua.Options{SkipOpenLibs: !useOpenLibs});
// with useOpenLibs unset it then opens only the package, base and table
// libraries plus a reduced os module, sets the resource as the global `obj`
// (JSON-like: objects -> tables, arrays -> 1-based tables, numbers ->
// LNumber, booleans -> LBool, strings -> LString, null -> nil), runs the
// script under a 1 s context deadline and JSON-decodes the returned table
// into {status, message}. A status outside Healthy, Progressing, Degraded,
// Suspended, Missing and Unknown becomes Unknown, "Lua returned an invalid
// health status".
//
// Eval reproduces that. Its Libs argument picks the libraries:
//   - Strict: base only. Stricter than Argo CD (no package, table or os), so a
//     script that passes here needs nothing beyond base functions.
//   - ArgoCD: package, base and table, as argocd-cm scripts get without
//     useOpenLibs (the reduced os module is Argo CD's own code and is left
//     out).
//   - OpenLibs: every gopher-lua library, as with useOpenLibs: true.
package health

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	lua "github.com/yuin/gopher-lua"
)

// Libs selects which Lua libraries the script gets.
type Libs int

const (
	Strict Libs = iota
	ArgoCD
	OpenLibs
)

func (l Libs) String() string {
	switch l {
	case Strict:
		return "strict"
	case ArgoCD:
		return "argocd"
	case OpenLibs:
		return "openlibs"
	}
	return fmt.Sprintf("Libs(%d)", int(l))
}

// Status is Argo CD's HealthStatus as a health script returns it.
type Status struct {
	Status  string `json:"status"`
	Message string `json:"message,omitempty"`
}

var validStatus = map[string]bool{
	"Healthy": true, "Progressing": true, "Degraded": true,
	"Suspended": true, "Missing": true, "Unknown": true,
}

// Eval runs a health script against obj (a decoded Kubernetes object).
func Eval(script string, obj map[string]any, libs Libs) (Status, error) {
	l := lua.NewState(lua.Options{SkipOpenLibs: libs != OpenLibs})
	defer l.Close()

	var open []struct {
		name string
		fn   lua.LGFunction
	}
	add := func(name string, fn lua.LGFunction) {
		open = append(open, struct {
			name string
			fn   lua.LGFunction
		}{name, fn})
	}
	switch libs {
	case Strict:
		add(lua.BaseLibName, lua.OpenBase)
	case ArgoCD:
		add(lua.LoadLibName, lua.OpenPackage)
		add(lua.BaseLibName, lua.OpenBase)
		add(lua.TabLibName, lua.OpenTable)
	}
	for _, lib := range open {
		if err := l.CallByParam(lua.P{Fn: l.NewFunction(lib.fn), NRet: 0, Protect: true}, lua.LString(lib.name)); err != nil {
			return Status{}, fmt.Errorf("opening %s: %w", lib.name, err)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	l.SetContext(ctx)
	l.SetGlobal("obj", decodeValue(l, obj))
	if err := l.DoString(script); err != nil {
		return Status{}, err
	}

	ret := l.Get(-1)
	table, ok := ret.(*lua.LTable)
	if !ok {
		return Status{}, fmt.Errorf("expect table output from Lua script, not %s", ret.Type())
	}
	// Argo CD JSON-encodes the table and decodes it into a HealthStatus:
	// both fields must be strings (or absent).
	var got Status
	for _, f := range []struct {
		key string
		dst *string
	}{{"status", &got.Status}, {"message", &got.Message}} {
		switch v := table.RawGetString(f.key).(type) {
		case lua.LString:
			*f.dst = string(v)
		case *lua.LNilType:
		default:
			return Status{}, fmt.Errorf("hs.%s is a %s, not a string", f.key, v.Type())
		}
	}
	if !validStatus[got.Status] {
		return Status{Status: "Unknown", Message: "Lua returned an invalid health status"}, nil
	}
	return got, nil
}

// decodeValue converts a JSON-like Go value into a Lua value, as Argo CD's
// util/lua decodeValue does.
func decodeValue(l *lua.LState, value any) lua.LValue {
	switch v := value.(type) {
	case bool:
		return lua.LBool(v)
	case float64:
		return lua.LNumber(v)
	case int:
		return lua.LNumber(v)
	case int32:
		return lua.LNumber(v)
	case int64:
		return lua.LNumber(v)
	case json.Number:
		return lua.LString(v)
	case string:
		return lua.LString(v)
	case []any:
		arr := l.CreateTable(len(v), 0)
		for _, item := range v {
			arr.Append(decodeValue(l, item))
		}
		return arr
	case map[string]any:
		tbl := l.CreateTable(0, len(v))
		for key, item := range v {
			tbl.RawSetH(lua.LString(key), decodeValue(l, item))
		}
		return tbl
	}
	return lua.LNil
}
