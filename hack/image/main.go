// Command oci-image builds, checks and publishes model-operator's OCI image
// without a container runtime, with go-containerregistry.
//
//	oci-image build --rootfs DIR --out DIR --version V [--revision C] [--source URL] [--arch amd64]
//	    one layer from the rootfs (hack/image/rootfs.sh assembles it, as the
//	    Dockerfile does), the config below; writes DIR/oci (an OCI image
//	    layout) and DIR/model-operator.tar (a docker-archive tarball for
//	    docker load, kind load image-archive, ctr images import).
//	oci-image check --out DIR --dockerfile FILE --version V [--revision C] [--source URL]
//	    validates both, compares the config with the Dockerfile's final stage,
//	    extracts the rootfs and runs `model-operator --version` in it under
//	    chroot as the image's user (needs root).
//	oci-image push --out DIR --ref REF          the layout's image to a registry
//	oci-image index --ref REF SRC...            a multi-arch index of pushed images
package main

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/google/go-containerregistry/pkg/v1/validate"
)

// What the image runs; the Dockerfile's final stage must say the same
// (check compares them).
const (
	binary    = "/model-operator"
	user      = "65532:65532"
	certFile  = "/etc/ssl/certs/ca-certificates.crt"
	imageName = "model-operator"
	tarName   = "model-operator.tar"
)

var (
	entrypoint = []string{binary}
	cmd        = []string{"run"}
	env        = []string{"PATH=/", "SSL_CERT_FILE=" + certFile}
)

func labels(version, revision, source string) map[string]string {
	l := map[string]string{
		"org.opencontainers.image.title":       "model-operator",
		"org.opencontainers.image.description": "Kubernetes operator that serves ML models and rolls bad versions back automatically",
		"org.opencontainers.image.licenses":    "Apache-2.0",
		"org.opencontainers.image.version":     version,
		"org.opencontainers.image.source":      source,
		"org.opencontainers.image.revision":    revision,
	}
	for k, v := range l {
		if v == "" {
			delete(l, k)
		}
	}
	return l
}

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "build":
		err = build(os.Args[2:])
	case "check":
		err = check(os.Args[2:])
	case "push":
		err = push(os.Args[2:])
	case "index":
		err = index(os.Args[2:])
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "oci-image %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: oci-image build|check|push|index [flags] (see hack/image/main.go)")
	os.Exit(2)
}

// layerTar packs dir into a tar with fixed ownership (root) and times, in
// name order, so the same files always give the same layer digest.
func layerTar(dir string) ([]byte, error) {
	var paths []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != dir {
			paths = append(paths, p)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	sort.Strings(paths)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, p := range paths {
		info, err := os.Lstat(p)
		if err != nil {
			return nil, err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return nil, err
		}
		link := ""
		if info.Mode()&fs.ModeSymlink != 0 {
			if link, err = os.Readlink(p); err != nil {
				return nil, err
			}
		}
		hdr, err := tar.FileInfoHeader(info, link)
		if err != nil {
			return nil, err
		}
		hdr.Name = filepath.ToSlash(rel)
		if info.IsDir() {
			hdr.Name += "/"
		}
		hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname = 0, 0, "", ""
		hdr.ModTime, hdr.AccessTime, hdr.ChangeTime = time.Unix(0, 0), time.Time{}, time.Time{}
		hdr.Format = tar.FormatPAX
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, err
		}
		if info.Mode().IsRegular() {
			f, err := os.Open(p)
			if err != nil {
				return nil, err
			}
			_, err = io.Copy(tw, f)
			f.Close()
			if err != nil {
				return nil, err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func build(args []string) error {
	fl := flag.NewFlagSet("build", flag.ExitOnError)
	rootfs := fl.String("rootfs", "", "directory with the image's files")
	out := fl.String("out", "", "output directory")
	version := fl.String("version", "", "the operator version (image tag)")
	revision := fl.String("revision", "", "git commit")
	source := fl.String("source", "", "source repository URL")
	arch := fl.String("arch", "amd64", "GOARCH-style architecture of the binary")
	_ = fl.Parse(args)
	if *rootfs == "" || *out == "" || *version == "" {
		return errors.New("--rootfs, --out and --version are required")
	}
	if err := staticBinary(filepath.Join(*rootfs, binary)); err != nil {
		return err
	}
	data, err := layerTar(*rootfs)
	if err != nil {
		return fmt.Errorf("packing %s: %w", *rootfs, err)
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(data)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return err
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err = mutate.Append(img, mutate.Addendum{
		Layer:     layer,
		MediaType: types.OCILayer,
		History:   v1.History{CreatedBy: "hack/image.sh: hack/image/rootfs.sh", Created: v1.Time{Time: time.Unix(0, 0).UTC()}},
	})
	if err != nil {
		return err
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return err
	}
	cfg = cfg.DeepCopy()
	cfg.Architecture, cfg.OS = *arch, "linux"
	cfg.Created = v1.Time{Time: time.Unix(0, 0).UTC()}
	cfg.Config.User = user
	cfg.Config.Entrypoint = entrypoint
	cfg.Config.Cmd = cmd
	cfg.Config.Env = env
	cfg.Config.Labels = labels(*version, *revision, *source)
	if img, err = mutate.ConfigFile(img, cfg); err != nil {
		return err
	}
	ociDir := filepath.Join(*out, "oci")
	if err := os.RemoveAll(ociDir); err != nil {
		return err
	}
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	idx = mutate.AppendManifests(idx, mutate.IndexAddendum{
		Add: img,
		Descriptor: v1.Descriptor{
			Platform:    &v1.Platform{OS: "linux", Architecture: *arch},
			Annotations: map[string]string{"org.opencontainers.image.ref.name": *version},
		},
	})
	if _, err := layout.Write(ociDir, idx); err != nil {
		return fmt.Errorf("writing the OCI layout: %w", err)
	}
	// Validated as written (digests, sizes, manifest), read back from disk.
	written, err := theImage(*out)
	if err != nil {
		return err
	}
	if err := validate.Image(written); err != nil {
		return fmt.Errorf("the written image does not validate: %w", err)
	}
	tag, err := name.NewTag(imageName + ":" + *version)
	if err != nil {
		return err
	}
	tarPath := filepath.Join(*out, tarName)
	if err := tarball.WriteToFile(tarPath, tag, img); err != nil {
		return fmt.Errorf("writing %s: %w", tarPath, err)
	}
	digest, err := img.Digest()
	if err != nil {
		return err
	}
	fmt.Printf("oci-image: %s (%s, linux/%s)\n  OCI layout: %s\n  tarball:    %s (docker load, kind load image-archive, ctr images import)\n",
		tag, digest, *arch, ociDir, tarPath)
	return nil
}

// staticBinary refuses an executable that needs a dynamic loader: the image
// has no libc.
func staticBinary(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("%s is dynamically linked (it has an ELF interpreter); build it for the musl target", path)
		}
	}
	return nil
}

// theImage is the layout's only image.
func theImage(out string) (v1.Image, error) {
	idx, err := layout.ImageIndexFromPath(filepath.Join(out, "oci"))
	if err != nil {
		return nil, err
	}
	m, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	if len(m.Manifests) != 1 {
		return nil, fmt.Errorf("the layout holds %d manifests, want 1", len(m.Manifests))
	}
	return idx.Image(m.Manifests[0].Digest)
}

// dockerfileStage is what the Dockerfile's final stage declares.
type dockerfileStage struct {
	from       string
	copies     []string
	user       string
	entrypoint []string
	cmd        []string
	env        []string
	labels     map[string]string
}

// parseDockerfile reads the final stage's instructions, with ARG defaults
// and the given build arguments substituted.
func parseDockerfile(path string, buildArgs map[string]string) (dockerfileStage, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return dockerfileStage{}, err
	}
	text := strings.ReplaceAll(string(raw), "\\\n", " ")
	var st dockerfileStage
	args := map[string]string{}
	argRef := regexp.MustCompile(`\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?`)
	expand := func(s string) string {
		return argRef.ReplaceAllStringFunc(s, func(m string) string {
			return args[argRef.FindStringSubmatch(m)[1]]
		})
	}
	unquote := func(s string) string { return strings.Trim(s, `"`) }
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		word, rest, _ := strings.Cut(line, " ")
		rest = strings.TrimSpace(rest)
		switch strings.ToUpper(word) {
		case "FROM":
			st = dockerfileStage{from: rest, labels: map[string]string{}}
			args = map[string]string{}
		case "ARG":
			k, v, _ := strings.Cut(rest, "=")
			if given, ok := buildArgs[k]; ok {
				v = given
			}
			args[k] = unquote(v)
		case "COPY":
			st.copies = append(st.copies, rest)
		case "USER":
			st.user = expand(rest)
		case "ENTRYPOINT":
			if err := json.Unmarshal([]byte(rest), &st.entrypoint); err != nil {
				return st, fmt.Errorf("ENTRYPOINT must be a JSON array: %w", err)
			}
		case "CMD":
			if err := json.Unmarshal([]byte(rest), &st.cmd); err != nil {
				return st, fmt.Errorf("CMD must be a JSON array: %w", err)
			}
		case "ENV":
			k, v, _ := strings.Cut(rest, "=")
			st.env = append(st.env, k+"="+unquote(expand(v)))
		case "LABEL":
			for _, kv := range regexp.MustCompile(`[^\s=]+="[^"]*"|[^\s=]+=\S+`).FindAllString(rest, -1) {
				k, v, _ := strings.Cut(kv, "=")
				// An empty label (no GIT_COMMIT or SOURCE given) is one
				// `make image` leaves out.
				if v := unquote(expand(unquote(v))); v != "" {
					st.labels[k] = v
				}
			}
		}
	}
	return st, nil
}

func equal[T comparable](a, b []T) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func check(args []string) error {
	fl := flag.NewFlagSet("check", flag.ExitOnError)
	out := fl.String("out", "", "directory `build` wrote")
	dockerfile := fl.String("dockerfile", "Dockerfile", "the Dockerfile to compare with")
	version := fl.String("version", "", "expected version")
	revision := fl.String("revision", "", "expected git commit")
	source := fl.String("source", "", "expected source URL")
	_ = fl.Parse(args)
	if *out == "" || *version == "" {
		return errors.New("--out and --version are required")
	}
	var problems []string
	fail := func(format string, a ...any) { problems = append(problems, fmt.Sprintf(format, a...)) }

	// 1. Both forms validate (manifest, config and layer digests, sizes).
	img, err := theImage(*out)
	if err != nil {
		return fmt.Errorf("OCI layout: %w", err)
	}
	if err := validate.Image(img); err != nil {
		return fmt.Errorf("the OCI layout's image does not validate: %w", err)
	}
	tag, err := name.NewTag(imageName + ":" + *version)
	if err != nil {
		return err
	}
	fromTar, err := tarball.ImageFromPath(filepath.Join(*out, tarName), &tag)
	if err != nil {
		return fmt.Errorf("the tarball has no image tagged %s: %w", tag, err)
	}
	if err := validate.Image(fromTar); err != nil {
		return fmt.Errorf("the tarball's image does not validate: %w", err)
	}
	layoutConfig, err := img.ConfigName()
	if err != nil {
		return err
	}
	if tarConfig, err := fromTar.ConfigName(); err != nil || tarConfig != layoutConfig {
		fail("the tarball's config %v differs from the layout's %v (%v)", tarConfig, layoutConfig, err)
	}

	// 2. The config: non-root numeric user, entrypoint, labels.
	cfg, err := img.ConfigFile()
	if err != nil {
		return err
	}
	c := cfg.Config
	if c.User != user {
		fail("user %q, want %q", c.User, user)
	}
	if !equal(c.Entrypoint, entrypoint) || !equal(c.Cmd, cmd) {
		fail("entrypoint %q cmd %q, want %q %q", c.Entrypoint, c.Cmd, entrypoint, cmd)
	}
	want := labels(*version, *revision, *source)
	for k, v := range want {
		if c.Labels[k] != v {
			fail("label %s = %q, want %q", k, c.Labels[k], v)
		}
	}
	if cfg.OS != "linux" || cfg.Architecture == "" {
		fail("platform %s/%s", cfg.OS, cfg.Architecture)
	}

	// 3. The Dockerfile's final stage declares the same image.
	st, err := parseDockerfile(*dockerfile, map[string]string{"VERSION": *version, "GIT_COMMIT": *revision, "SOURCE": *source})
	if err != nil {
		return fmt.Errorf("%s: %w", *dockerfile, err)
	}
	if st.from != "scratch" {
		fail("Dockerfile: final stage FROM %q, want scratch (the rootfs is all the image holds)", st.from)
	}
	if !equal(st.copies, []string{"--from=build /rootfs/ /"}) {
		fail("Dockerfile: final stage copies %q, want only the rootfs hack/image/rootfs.sh assembled (--from=build /rootfs/ /)", st.copies)
	}
	if st.user != c.User || !equal(st.entrypoint, c.Entrypoint) || !equal(st.cmd, c.Cmd) || !equal(st.env, c.Env) {
		fail("Dockerfile: USER %q ENTRYPOINT %q CMD %q ENV %q; make image: %q %q %q %q",
			st.user, st.entrypoint, st.cmd, st.env, c.User, c.Entrypoint, c.Cmd, c.Env)
	}
	for k, v := range c.Labels {
		if st.labels[k] != v {
			fail("Dockerfile: LABEL %s = %q; make image: %q", k, st.labels[k], v)
		}
	}
	for k := range st.labels {
		if _, ok := c.Labels[k]; !ok {
			fail("Dockerfile: LABEL %s is not in the image", k)
		}
	}

	// 4. The rootfs: extract it and run the binary in it, as the image's user.
	root, err := os.MkdirTemp("", "oci-image-rootfs-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(root)
	// A container's / is 0755; MkdirTemp's 0700 would lock the image's user out.
	if err := os.Chmod(root, 0o755); err != nil {
		return err
	}
	if err := extract(img, root); err != nil {
		return fmt.Errorf("extracting the rootfs: %w", err)
	}
	if pem, err := os.ReadFile(filepath.Join(root, certFile)); err != nil || !bytes.Contains(pem, []byte("BEGIN CERTIFICATE")) {
		fail("no CA certificates at %s (%v)", certFile, err)
	}
	if passwd, err := os.ReadFile(filepath.Join(root, "etc/passwd")); err != nil || !bytes.Contains(passwd, []byte(":65532:65532:")) {
		fail("/etc/passwd has no user 65532 (%v)", err)
	}
	if err := staticBinary(filepath.Join(root, binary)); err != nil {
		fail("%v", err)
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("chroot needs root (run with sudo); other checks: %v", problems)
	}
	run := exec.Command("chroot", "--userspec="+c.User, root, c.Entrypoint[0], "--version")
	run.Env = c.Env
	got, err := run.CombinedOutput()
	wantLine := "model-operator " + *version
	if *revision != "" {
		wantLine += " (commit " + *revision + ")"
	}
	if err != nil || strings.TrimSpace(string(got)) != wantLine {
		fail("chroot %s %s --version: %q (%v), want %q", root, binary, got, err, wantLine)
	} else {
		fmt.Printf("oci-image check: chroot run as %s: %s\n", c.User, strings.TrimSpace(string(got)))
	}

	if len(problems) > 0 {
		return fmt.Errorf("\n  %s", strings.Join(problems, "\n  "))
	}
	digest, _ := img.Digest()
	fmt.Printf("oci-image check: %s %s: layout and tarball valid, user %s, entrypoint %q, labels and Dockerfile agree\n",
		tag, digest, c.User, c.Entrypoint)
	return nil
}

// extract unpacks the image's flattened filesystem into root.
func extract(img v1.Image, root string) error {
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		target := filepath.Join(root, filepath.Clean("/"+hdr.Name))
		if !strings.HasPrefix(target, root+string(os.PathSeparator)) && target != root {
			return fmt.Errorf("entry %q leaves the rootfs", hdr.Name)
		}
		mode := os.FileMode(hdr.Mode).Perm() | os.FileMode(hdr.Mode)&(os.ModeSticky)
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(target, 0o755); err != nil {
				return err
			}
			if err := os.Chmod(target, os.FileMode(hdr.Mode)&0o7777|dirSticky(hdr.Mode)); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
				return err
			}
			f, err := os.OpenFile(target, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
			if err != nil {
				return err
			}
			_, err = io.Copy(f, tr)
			f.Close()
			if err != nil {
				return err
			}
		case tar.TypeSymlink:
			if err := os.Symlink(hdr.Linkname, target); err != nil {
				return err
			}
		default:
			return fmt.Errorf("unexpected entry type %q for %s", hdr.Typeflag, hdr.Name)
		}
	}
}

func dirSticky(mode int64) os.FileMode {
	if mode&0o1000 != 0 {
		return os.ModeSticky
	}
	return 0
}

func push(args []string) error {
	fl := flag.NewFlagSet("push", flag.ExitOnError)
	out := fl.String("out", "", "directory `build` wrote")
	ref := fl.String("ref", "", "where to push, e.g. ghcr.io/org/model-operator:0.1.0-amd64")
	_ = fl.Parse(args)
	img, err := theImage(*out)
	if err != nil {
		return err
	}
	r, err := name.ParseReference(*ref)
	if err != nil {
		return err
	}
	if err := remote.Write(r, img, remote.WithAuthFromKeychain(authn.DefaultKeychain)); err != nil {
		return err
	}
	digest, err := img.Digest()
	if err != nil {
		return err
	}
	fmt.Printf("%s@%s\n", r.Context(), digest)
	return nil
}

func index(args []string) error {
	fl := flag.NewFlagSet("index", flag.ExitOnError)
	ref := fl.String("ref", "", "the multi-arch tag to write")
	_ = fl.Parse(args)
	if *ref == "" || fl.NArg() == 0 {
		return errors.New("--ref and at least one pushed image are required")
	}
	target, err := name.ParseReference(*ref)
	if err != nil {
		return err
	}
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, src := range fl.Args() {
		r, err := name.ParseReference(src)
		if err != nil {
			return err
		}
		img, err := remote.Image(r, remote.WithAuthFromKeychain(authn.DefaultKeychain))
		if err != nil {
			return fmt.Errorf("%s: %w", src, err)
		}
		cfg, err := img.ConfigFile()
		if err != nil {
			return err
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{
			Add:        img,
			Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: cfg.OS, Architecture: cfg.Architecture}},
		})
	}
	return remote.WriteIndex(target, idx, remote.WithAuthFromKeychain(authn.DefaultKeychain))
}
