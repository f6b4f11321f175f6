package deploy_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/switchboard-mcp/switchboard/providers"
)

// The kustomizations rendered with a real kustomize (make k8s-check builds the
// pinned one into bin/ and points KUSTOMIZE at it).
const (
	k8sTop      = "../examples/kubernetes"
	k8sReplicas = "../examples/kubernetes/replicas"
	namespace   = "switchboard"
)

// kustomize returns a command line that renders a kustomization: $KUSTOMIZE,
// kustomize on PATH or in ../bin, or kubectl kustomize. Without any it skips
// the test, except under CI, which builds the pinned one (make k8s-check).
func kustomize(t *testing.T) []string {
	t.Helper()
	if k := os.Getenv("KUSTOMIZE"); k != "" {
		return []string{k, "build"}
	}
	if k, err := exec.LookPath("kustomize"); err == nil {
		return []string{k, "build"}
	}
	if k, err := filepath.Abs("../bin/kustomize"); err == nil {
		if _, err := os.Stat(k); err == nil {
			return []string{k, "build"}
		}
	}
	if k, err := exec.LookPath("kubectl"); err == nil {
		return []string{k, "kustomize"}
	}
	if ci := strings.ToLower(os.Getenv("CI")); ci != "" && ci != "false" && ci != "0" {
		t.Fatal("no kustomize: CI must run make k8s-check, which builds the pinned one")
	}
	t.Skip("skipping: no kustomize (make k8s-check builds the pinned version into bin/)")
	return nil
}

// obj is one rendered object, navigated generically.
type obj map[string]any

func (o obj) kind() string { s, _ := o["kind"].(string); return s }
func (o obj) name() string { return str(o, "metadata", "name") }
func (o obj) id() string   { return o.kind() + " " + o.name() }

// get walks maps by key and lists by index ("0").
func get(v any, keys ...string) any {
	for _, k := range keys {
		switch m := v.(type) {
		case map[string]any:
			v = m[k]
		case obj:
			v = m[k]
		case []any:
			i, err := strconv.Atoi(k)
			if err != nil || i < 0 || i >= len(m) {
				return nil
			}
			v = m[i]
		default:
			return nil
		}
	}
	return v
}

func str(v any, keys ...string) string {
	switch s := get(v, keys...).(type) {
	case string:
		return s
	case int:
		return strconv.Itoa(s)
	}
	return ""
}

func list(v any, keys ...string) []any { l, _ := get(v, keys...).([]any); return l }

func strMap(v any, keys ...string) map[string]string {
	out := map[string]string{}
	m, _ := get(v, keys...).(map[string]any)
	for k, x := range m {
		out[k] = fmt.Sprint(x)
	}
	return out
}

func render(t *testing.T, dir string) []obj {
	t.Helper()
	argv := append(kustomize(t), dir)
	cmd := exec.Command(argv[0], argv[1:]...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(argv, " "), err, stderr.String())
	}
	dec := yaml.NewDecoder(bytes.NewReader(out))
	var objs []obj
	for {
		var m map[string]any // nested mappings decode as map[string]any
		err := dec.Decode(&m)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s: rendered output: %v", dir, err)
		}
		if m != nil {
			objs = append(objs, obj(m))
		}
	}
	if len(objs) == 0 {
		t.Fatalf("%s rendered nothing", dir)
	}
	return objs
}

// outOfBand are the Secrets the examples document (*.example.yaml) but never
// apply: name → keys.
func outOfBand(t *testing.T, dirs ...string) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, d := range dirs {
		files, _ := filepath.Glob(filepath.Join(d, "*.example.yaml"))
		for _, f := range files {
			for _, o := range parseDocs(t, f, mustRead(t, f)) {
				if o.Kind != "Secret" {
					continue
				}
				for k := range o.Data {
					out[o.Metadata.Name] = append(out[o.Metadata.Name], k)
				}
				for k := range o.StringData {
					out[o.Metadata.Name] = append(out[o.Metadata.Name], k)
				}
			}
		}
	}
	return out
}

// rendered indexes a rendered bundle.
type rendered struct {
	objs      []obj
	byKind    map[string][]obj
	secrets   map[string][]string // out-of-band Secrets and their keys
	workloads []obj
}

func index(objs []obj, secrets map[string][]string) rendered {
	r := rendered{objs: objs, byKind: map[string][]obj{}, secrets: secrets}
	for _, o := range objs {
		r.byKind[o.kind()] = append(r.byKind[o.kind()], o)
		if o.kind() == "Deployment" || o.kind() == "StatefulSet" {
			r.workloads = append(r.workloads, o)
		}
	}
	return r
}

func (r rendered) find(kind, name string) obj {
	for _, o := range r.byKind[kind] {
		if o.name() == name {
			return o
		}
	}
	return nil
}

func podLabels(w obj) map[string]string { return strMap(w, "spec", "template", "metadata", "labels") }

func containers(w obj) []any { return list(w, "spec", "template", "spec", "containers") }

// containerPort resolves a port (name or number) of a container.
func containerPort(c any, port string) (int, bool) {
	for _, p := range list(c, "ports") {
		n, _ := get(p, "containerPort").(int)
		if port == str(p, "name") && port != "" || port == strconv.Itoa(n) {
			return n, true
		}
	}
	return 0, false
}

// selected returns the workloads whose pods a selector matches.
func (r rendered) selected(sel map[string]string) []obj {
	var out []obj
	for _, w := range r.workloads {
		if matches(sel, podLabels(w)) {
			out = append(out, w)
		}
	}
	return out
}

func replicas(w obj) int {
	n, ok := get(w, "spec", "replicas").(int)
	if !ok {
		return 1
	}
	return n
}

// checkRendered checks every cross-reference of a rendered bundle.
func checkRendered(t *testing.T, r rendered) {
	t.Helper()
	if r.find("Namespace", namespace) == nil {
		t.Errorf("no Namespace %s", namespace)
	}
	for _, o := range r.objs {
		if o.kind() != "Namespace" && str(o, "metadata", "namespace") != namespace {
			t.Errorf("%s is in namespace %q, want %q", o.id(), str(o, "metadata", "namespace"), namespace)
		}
		if o.kind() == "Secret" {
			t.Errorf("%s is rendered: key material must be created out of band", o.id())
		}
	}
	for _, w := range r.workloads {
		checkWorkload(t, r, w)
	}
	for _, s := range r.byKind["Service"] {
		ws := r.selected(strMap(s, "spec", "selector"))
		if len(ws) == 0 {
			t.Errorf("%s selects no workload's pods", s.id())
			continue
		}
		for _, p := range list(s, "spec", "ports") {
			tp := str(p, "targetPort")
			for _, w := range ws {
				found := false
				for _, c := range containers(w) {
					if _, ok := containerPort(c, tp); ok {
						found = true
					}
				}
				if !found {
					t.Errorf("%s: targetPort %q is no container port of %s", s.id(), tp, w.id())
				}
			}
		}
	}
	for _, p := range r.byKind["PodDisruptionBudget"] {
		ws := r.selected(strMap(p, "spec", "selector", "matchLabels"))
		if len(ws) == 0 {
			t.Errorf("%s selects no workload's pods", p.id())
		}
		for _, w := range ws {
			maxU, hasMax := get(p, "spec", "maxUnavailable").(int)
			minA, hasMin := get(p, "spec", "minAvailable").(int)
			if hasMax && maxU < 1 || hasMin && minA >= replicas(w) || !hasMax && !hasMin {
				t.Errorf("%s leaves no voluntary disruption for %s (%d replicas): drains would block", p.id(), w.id(), replicas(w))
			}
		}
	}
	for _, in := range r.byKind["Ingress"] {
		for _, rule := range list(in, "spec", "rules") {
			for _, hp := range list(rule, "http", "paths") {
				name, port := str(hp, "backend", "service", "name"), str(hp, "backend", "service", "port", "name")
				if port == "" {
					port = str(hp, "backend", "service", "port", "number")
				}
				svc := r.find("Service", name)
				if svc == nil {
					t.Errorf("%s: backend Service %q is not in the bundle", in.id(), name)
					continue
				}
				if !slices.ContainsFunc(list(svc, "spec", "ports"), func(p any) bool { return str(p, "name") == port || str(p, "port") == port }) {
					t.Errorf("%s: Service %s has no port %q", in.id(), name, port)
				}
			}
		}
	}
	for _, np := range r.byKind["NetworkPolicy"] {
		if len(r.selected(strMap(np, "spec", "podSelector", "matchLabels"))) == 0 {
			t.Errorf("%s selects no workload's pods", np.id())
		}
	}
}

func checkWorkload(t *testing.T, r rendered, w obj) {
	t.Helper()
	if !matches(strMap(w, "spec", "selector", "matchLabels"), podLabels(w)) {
		t.Errorf("%s: selector does not match its pod labels", w.id())
	}
	volumes := map[string]any{}
	for _, v := range list(w, "spec", "template", "spec", "volumes") {
		volumes[str(v, "name")] = v
	}
	for _, v := range list(w, "spec", "volumeClaimTemplates") {
		volumes[str(v, "metadata", "name")] = v
	}
	for name, v := range volumes {
		if cm := str(v, "configMap", "name"); cm != "" {
			o := r.find("ConfigMap", cm)
			if o == nil {
				t.Errorf("%s: volume %s: ConfigMap %q is not in the bundle", w.id(), name, cm)
				continue
			}
			for _, it := range list(v, "configMap", "items") {
				if _, ok := strMap(o, "data")[str(it, "key")]; !ok {
					t.Errorf("%s: volume %s: ConfigMap %s has no key %q", w.id(), name, cm, str(it, "key"))
				}
			}
		}
		if sec := str(v, "secret", "secretName"); sec != "" {
			keys, ok := r.secrets[sec]
			if !ok {
				t.Errorf("%s: volume %s: Secret %q is neither rendered nor documented in a *.example.yaml", w.id(), name, sec)
			}
			for _, it := range list(v, "secret", "items") {
				if !slices.Contains(keys, str(it, "key")) {
					t.Errorf("%s: volume %s: Secret %s (example) has no key %q", w.id(), name, sec, str(it, "key"))
				}
			}
		}
	}
	for _, c := range containers(w) {
		for _, m := range list(c, "volumeMounts") {
			if _, ok := volumes[str(m, "name")]; !ok {
				t.Errorf("%s: container %s mounts unknown volume %q", w.id(), str(c, "name"), str(m, "name"))
			}
		}
		for _, pr := range []string{"livenessProbe", "readinessProbe", "startupProbe"} {
			port := str(c, pr, "httpGet", "port")
			if port == "" {
				port = str(c, pr, "tcpSocket", "port")
			}
			if get(c, pr) != nil {
				if _, ok := containerPort(c, port); !ok {
					t.Errorf("%s: %s port %q is no container port", w.id(), pr, port)
				}
			}
		}
	}
	if w.kind() == "StatefulSet" {
		svc := r.find("Service", str(w, "spec", "serviceName"))
		switch {
		case svc == nil:
			t.Errorf("%s: serviceName %q is not in the bundle", w.id(), str(w, "spec", "serviceName"))
		case str(svc, "spec", "clusterIP") != "None":
			t.Errorf("%s: serviceName %s is not headless", w.id(), svc.name())
		case !matches(strMap(svc, "spec", "selector"), podLabels(w)):
			t.Errorf("%s: headless Service %s does not select its pods", w.id(), svc.name())
		}
	}
}

// mountOf returns the volume and the path inside it that file falls in, for a
// container's mounts.
func mountOf(c any, file string) (volume, rel string, ok bool) {
	for _, m := range list(c, "volumeMounts") {
		mp := strings.TrimSuffix(str(m, "mountPath"), "/")
		if r, found := strings.CutPrefix(file, mp+"/"); found {
			return str(m, "name"), r, true
		}
		if file == mp {
			return str(m, "name"), "", true
		}
	}
	return "", "", false
}

// gatewayContainer returns the StatefulSet and its switchboard container.
func gatewayContainer(t *testing.T, r rendered) (obj, any) {
	t.Helper()
	for _, w := range r.workloads {
		for _, c := range containers(w) {
			if str(c, "name") == "switchboard" {
				return w, c
			}
		}
	}
	t.Fatal("no switchboard container in the bundle")
	return nil, nil
}

// TestKustomizeBuild renders both kustomizations with a real kustomize and
// checks every cross-reference of what would be applied.
func TestKustomizeBuild(t *testing.T) {
	secrets := outOfBand(t, k8sDir, k8sReplicas)
	t.Run("one replica", func(t *testing.T) {
		r := index(render(t, k8sTop), secrets)
		checkRendered(t, r)
		w, _ := gatewayContainer(t, r)
		if replicas(w) != 1 {
			t.Errorf("the one-replica bundle runs %d replicas of its bbolt file", replicas(w))
		}
	})
	t.Run("replicas", func(t *testing.T) {
		r := index(render(t, k8sReplicas), secrets)
		checkRendered(t, r)
		checkReplicas(t, r)
	})
}

// checkReplicas checks what the multi-replica overlay adds: the store, the
// router and the way they meet the StatefulSet.
func checkReplicas(t *testing.T, r rendered) {
	w, c := gatewayContainer(t, r)
	n := replicas(w)
	if n < 2 {
		t.Fatalf("%s runs %d replicas", w.id(), n)
	}
	if p := str(w, "spec", "podManagementPolicy"); p != "Parallel" {
		t.Errorf("%s: podManagementPolicy %q: replicas sharing a store can start together", w.id(), p)
	}
	if str(c, "readinessProbe", "httpGet", "path") != "/readyz" || str(c, "livenessProbe", "httpGet", "path") != "/healthz" {
		t.Errorf("%s: readiness must be /readyz (store connectivity), liveness /healthz", w.id())
	}

	// The gateway.yaml the pods read: strict and valid, and every path it
	// names is mounted from where the bundle says.
	cfgPath := flagValue(anyStrings(list(c, "args")), "--config")
	vol, rel, ok := mountOf(c, cfgPath)
	if !ok {
		t.Fatalf("--config %s is not on a mounted volume", cfgPath)
	}
	cmName := str(get(volumeByName(w, vol), "configMap"), "name")
	cm := r.find("ConfigMap", cmName)
	if cm == nil {
		t.Fatalf("--config %s: volume %s is not a ConfigMap of the bundle", cfgPath, vol)
	}
	data := strMap(cm, "data")[rel]
	cfg, err := providers.Parse([]byte(data), cfgPath, "ConfigMap "+cmName+": "+rel)
	if err != nil {
		t.Fatalf("the overlay's gateway.yaml does not validate:\n%v", err)
	}
	if cfg.Store.Postgres == nil {
		t.Fatal("the overlay's gateway.yaml has no store.postgres: replicas would each open their own bbolt file")
	}
	for what, file := range map[string]string{"store.postgres.dsn_file": cfg.Store.Postgres.DSNFile, "vault.key_file": cfg.Vault.KeyFile} {
		vol, rel, ok := mountOf(c, file)
		if !ok {
			t.Errorf("%s %s is not on a mounted volume", what, file)
			continue
		}
		v := volumeByName(w, vol)
		sec := str(v, "secret", "secretName")
		if sec == "" {
			t.Errorf("%s %s: volume %s is not a Secret", what, file, vol)
			continue
		}
		if !slices.ContainsFunc(list(v, "secret", "items"), func(it any) bool { return str(it, "path") == rel }) {
			t.Errorf("%s %s: Secret volume %s does not project %q", what, file, vol, rel)
		}
	}
	if _, rel, ok := mountOf(c, cfg.DataDir); !ok || rel != "" {
		t.Errorf("data_dir %s is not a volume mount of its own", cfg.DataDir)
	}
	if !strings.HasPrefix(cfg.Audit.File, cfg.DataDir+"/audit-") {
		t.Errorf("audit.file %s: each replica's log needs its own name (the default audit-<replica>.log)", cfg.Audit.File)
	}

	// The router: haproxy.cfg names every StatefulSet pod by its stable DNS
	// name and the gateway's port, with fixed ids, and routes as the tested
	// examples/haproxy/haproxy.cfg does.
	var router obj
	for _, d := range r.byKind["Deployment"] {
		if strings.Contains(d.name(), "router") {
			router = d
		}
	}
	if router == nil {
		t.Fatal("no router Deployment")
	}
	rc := containers(router)[0]
	args := anyStrings(list(rc, "args"))
	hcfg := flagValue(args, "-f")
	vol, rel, ok = mountOf(rc, hcfg)
	if !ok {
		t.Fatalf("router: -f %s is not on a mounted volume", hcfg)
	}
	rcm := r.find("ConfigMap", str(volumeByName(router, vol), "configMap", "name"))
	if rcm == nil {
		t.Fatalf("router: volume %s is not a ConfigMap of the bundle", vol)
	}
	hap := strMap(rcm, "data")[rel]
	if hap == "" {
		t.Fatalf("router: ConfigMap %s has no %s", rcm.name(), rel)
	}
	port, ok := containerPort(c, "http")
	if !ok {
		t.Fatal("the gateway container has no port named http")
	}
	if b := regexp.MustCompile(`(?m)^\s*bind\s+\S*:(\d+)`).FindStringSubmatch(hap); b == nil {
		t.Error("router: haproxy.cfg has no bind line")
	} else if _, ok := containerPort(rc, b[1]); !ok {
		t.Errorf("router: haproxy binds %s, which is no container port", b[1])
	}
	var want []string
	for i := range n {
		want = append(want, fmt.Sprintf("server %s-%d %s-%d.%s.%s.svc.cluster.local:%d id %d",
			w.name(), i, w.name(), i, str(w, "spec", "serviceName"), namespace, port, i+1))
	}
	var got []string
	for _, l := range strings.Split(hap, "\n") {
		if l = strings.TrimSpace(l); strings.HasPrefix(l, "server ") {
			got = append(got, l)
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("router: server lines\n%s\nwant one per replica of %s:\n%s", strings.Join(got, "\n"), w.id(), strings.Join(want, "\n"))
	}
	if rules, tested := routingRules(hap), routingRules(string(mustRead(t, haproxyConfig))); !slices.Equal(rules, tested) {
		t.Errorf("router: routing rules differ from the tested %s:\n%s\nwant:\n%s", haproxyConfig, strings.Join(rules, "\n"), strings.Join(tested, "\n"))
	}
	if hp, err := exec.LookPath("haproxy"); err == nil {
		f := filepath.Join(t.TempDir(), "haproxy.cfg")
		if err := os.WriteFile(f, []byte(hap), 0o600); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command(hp, "-c", "-f", f).CombinedOutput(); err != nil {
			t.Errorf("haproxy -c on the router's configuration: %v\n%s", err, out)
		}
	}

	// The gateway's NetworkPolicies admit the router and let the gateway
	// reach PostgreSQL.
	admitted, egress := false, false
	for _, np := range r.byKind["NetworkPolicy"] {
		if !matches(strMap(np, "spec", "podSelector", "matchLabels"), podLabels(w)) {
			continue
		}
		for _, rule := range list(np, "spec", "ingress") {
			for _, from := range list(rule, "from") {
				if sel := strMap(from, "podSelector", "matchLabels"); get(from, "namespaceSelector") == nil && matches(sel, podLabels(router)) {
					admitted = true
				}
			}
		}
		for _, rule := range list(np, "spec", "egress") {
			for _, p := range list(rule, "ports") {
				if str(p, "port") == "5432" {
					egress = true
				}
			}
		}
	}
	if !admitted {
		t.Error("no NetworkPolicy of the gateway pods admits the router's pods")
	}
	if !egress {
		t.Error("no NetworkPolicy lets the gateway pods reach PostgreSQL (5432)")
	}
}

func volumeByName(w obj, name string) any {
	for _, v := range list(w, "spec", "template", "spec", "volumes") {
		if str(v, "name") == name {
			return v
		}
	}
	return nil
}

func anyStrings(l []any) []string {
	out := make([]string, len(l))
	for i, v := range l {
		out[i] = fmt.Sprint(v)
	}
	return out
}

// routingRules are the lines of an haproxy.cfg that decide where a request
// goes: the frontend's http-request rules and the balancing, checking and
// retry settings.
func routingRules(cfg string) []string {
	var out []string
	for _, l := range strings.Split(cfg, "\n") {
		l = strings.Join(strings.Fields(l), " ")
		for _, p := range []string{"http-request ", "balance ", "hash-type ", "option httpchk", "http-check ", "retry-on ", "retries ", "option redispatch"} {
			if strings.HasPrefix(l, p) {
				out = append(out, l)
			}
		}
		if strings.HasPrefix(l, "default-server ") {
			// Everything but how servers are resolved.
			f := strings.Fields(l)
			var keep []string
			for i := 0; i < len(f); i++ {
				switch f[i] {
				case "resolvers", "init-addr":
					i++
					continue
				}
				keep = append(keep, f[i])
			}
			out = append(out, strings.Join(keep, " "))
		}
	}
	return out
}
