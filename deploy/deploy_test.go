package deploy_test

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// Paths relative to this package's directory.
const (
	repoRoot      = ".."
	k8sDir        = "../examples/kubernetes/base"
	dockerfile    = "../Dockerfile"
	dockerignore  = "../.dockerignore"
	imageConfig   = "gateway.yaml" // deploy/gateway.yaml, baked into the images
	systemdUnit   = "../examples/systemd/switchboard.service"
	configInImage = "/etc/switchboard/gateway.yaml"
	// drainBudget is the gateway's worst-case stop time (HTTP drain + provider stop)
	// that the orchestrators must wait for before SIGKILL.
	drainBudget = 30 * time.Second
)

// ---- Kubernetes object model (only the fields the checks need) -------------------------

type meta struct {
	Name      string            `yaml:"name"`
	Namespace string            `yaml:"namespace"`
	Labels    map[string]string `yaml:"labels"`
}

type object struct {
	APIVersion string            `yaml:"apiVersion"`
	Kind       string            `yaml:"kind"`
	Metadata   meta              `yaml:"metadata"`
	Data       map[string]string `yaml:"data"`
	StringData map[string]string `yaml:"stringData"`
	Spec       yaml.Node         `yaml:"spec"`

	file string
}

type keyRef struct {
	Name string `yaml:"name"`
	Key  string `yaml:"key"`
}

type item struct {
	Key  string `yaml:"key"`
	Path string `yaml:"path"`
}

type volume struct {
	Name      string `yaml:"name"`
	ConfigMap *struct {
		Name  string `yaml:"name"`
		Items []item `yaml:"items"`
	} `yaml:"configMap"`
	Secret *struct {
		SecretName string `yaml:"secretName"`
		Items      []item `yaml:"items"`
	} `yaml:"secret"`
	EmptyDir              map[string]any `yaml:"emptyDir"`
	PersistentVolumeClaim *struct {
		ClaimName string `yaml:"claimName"`
	} `yaml:"persistentVolumeClaim"`
}

type probe struct {
	HTTPGet *struct {
		Path string `yaml:"path"`
		Port string `yaml:"port"`
	} `yaml:"httpGet"`
}

type securityContext struct {
	RunAsNonRoot             *bool  `yaml:"runAsNonRoot"`
	RunAsUser                *int64 `yaml:"runAsUser"`
	AllowPrivilegeEscalation *bool  `yaml:"allowPrivilegeEscalation"`
	ReadOnlyRootFilesystem   *bool  `yaml:"readOnlyRootFilesystem"`
	Capabilities             struct {
		Drop []string `yaml:"drop"`
		Add  []string `yaml:"add"`
	} `yaml:"capabilities"`
	SeccompProfile struct {
		Type string `yaml:"type"`
	} `yaml:"seccompProfile"`
}

type container struct {
	Name  string   `yaml:"name"`
	Image string   `yaml:"image"`
	Args  []string `yaml:"args"`
	Ports []struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
	} `yaml:"ports"`
	Env []struct {
		Name      string `yaml:"name"`
		Value     string `yaml:"value"`
		ValueFrom *struct {
			SecretKeyRef    *keyRef `yaml:"secretKeyRef"`
			ConfigMapKeyRef *keyRef `yaml:"configMapKeyRef"`
		} `yaml:"valueFrom"`
	} `yaml:"env"`
	SecurityContext securityContext `yaml:"securityContext"`
	LivenessProbe   *probe          `yaml:"livenessProbe"`
	ReadinessProbe  *probe          `yaml:"readinessProbe"`
	StartupProbe    *probe          `yaml:"startupProbe"`
	Resources       struct {
		Requests map[string]string `yaml:"requests"`
		Limits   map[string]string `yaml:"limits"`
	} `yaml:"resources"`
	VolumeMounts []struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
		SubPath   string `yaml:"subPath"`
		ReadOnly  bool   `yaml:"readOnly"`
	} `yaml:"volumeMounts"`
}

type podSpec struct {
	AutomountServiceAccountToken  *bool           `yaml:"automountServiceAccountToken"`
	TerminationGracePeriodSeconds *int            `yaml:"terminationGracePeriodSeconds"`
	SecurityContext               securityContext `yaml:"securityContext"`
	Containers                    []container     `yaml:"containers"`
	Volumes                       []volume        `yaml:"volumes"`
}

type workloadSpec struct {
	ServiceName string `yaml:"serviceName"`
	Replicas    *int   `yaml:"replicas"`
	Strategy    struct {
		Type string `yaml:"type"`
	} `yaml:"strategy"`
	Selector struct {
		MatchLabels map[string]string `yaml:"matchLabels"`
	} `yaml:"selector"`
	Template struct {
		Metadata meta    `yaml:"metadata"`
		Spec     podSpec `yaml:"spec"`
	} `yaml:"template"`
	VolumeClaimTemplates []struct {
		Metadata meta `yaml:"metadata"`
	} `yaml:"volumeClaimTemplates"`
}

type serviceSpec struct {
	ClusterIP string            `yaml:"clusterIP"`
	Selector  map[string]string `yaml:"selector"`
	Ports     []struct {
		Name       string `yaml:"name"`
		Port       int    `yaml:"port"`
		TargetPort string `yaml:"targetPort"`
	} `yaml:"ports"`
}

type networkPolicySpec struct {
	PodSelector struct {
		MatchLabels map[string]string `yaml:"matchLabels"`
	} `yaml:"podSelector"`
	Ingress []struct {
		Ports []struct {
			Port string `yaml:"port"`
		} `yaml:"ports"`
	} `yaml:"ingress"`
}

type kustomization struct {
	Namespace          string   `yaml:"namespace"`
	Resources          []string `yaml:"resources"`
	ConfigMapGenerator []struct {
		Name     string   `yaml:"name"`
		Files    []string `yaml:"files"`
		Literals []string `yaml:"literals"`
	} `yaml:"configMapGenerator"`
	SecretGenerator []struct {
		Name     string   `yaml:"name"`
		Files    []string `yaml:"files"`
		Literals []string `yaml:"literals"`
		Envs     []string `yaml:"envs"`
	} `yaml:"secretGenerator"`
}

// gatewayConfig is the part of gateway.yaml the deployment must agree with.
type gatewayConfig struct {
	Listen  string `yaml:"listen"`
	DataDir string `yaml:"data_dir"`
	Vault   struct {
		KeyFile string `yaml:"key_file"`
	} `yaml:"vault"`
	Auth struct {
		Disabled bool `yaml:"disabled"`
	} `yaml:"auth"`
	Shutdown struct {
		Delay string `yaml:"delay"`
		Drain string `yaml:"drain"`
	} `yaml:"shutdown"`
	Providers map[string]struct {
		Command string            `yaml:"command"`
		Env     map[string]string `yaml:"env"`
	} `yaml:"providers"`
}

// ---- loading ----------------------------------------------------------------------------

// parseDocs decodes every YAML document in data.
func parseDocs(tb testing.TB, file string, data []byte) []object {
	tb.Helper()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var out []object
	for {
		var o object
		err := dec.Decode(&o)
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			tb.Fatalf("%s: %v", file, err)
		}
		if o.Kind == "" {
			continue // empty document
		}
		o.file = file
		out = append(out, o)
	}
}

func decodeSpec[T any](tb testing.TB, o object) T {
	tb.Helper()
	var s T
	if err := o.Spec.Decode(&s); err != nil {
		tb.Fatalf("%s: %s %s: spec: %v", o.file, o.Kind, o.Metadata.Name, err)
	}
	return s
}

func mustRead(tb testing.TB, p string) []byte {
	tb.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// bundle is the Kubernetes example as kustomize would see it.
type bundle struct {
	kust       kustomization
	objects    []object          // from resources
	configMaps map[string]object // from resources and configMapGenerator
	secrets    map[string]object // from resources and *.example.yaml (created out of band)
	gatewayCfg map[string][]byte // configMap name -> gateway.yaml bytes
}

func loadBundle(tb testing.TB) bundle {
	tb.Helper()
	var b bundle
	if err := yaml.Unmarshal(mustRead(tb, filepath.Join(k8sDir, "kustomization.yaml")), &b.kust); err != nil {
		tb.Fatalf("kustomization.yaml: %v", err)
	}
	b.configMaps = map[string]object{}
	b.secrets = map[string]object{}
	b.gatewayCfg = map[string][]byte{}
	for _, r := range b.kust.Resources {
		for _, o := range parseDocs(tb, r, mustRead(tb, filepath.Join(k8sDir, r))) {
			b.objects = append(b.objects, o)
			switch o.Kind {
			case "ConfigMap":
				b.configMaps[o.Metadata.Name] = o
			case "Secret":
				b.secrets[o.Metadata.Name] = o
			}
		}
	}
	for _, g := range b.kust.ConfigMapGenerator {
		cm := object{Kind: "ConfigMap", Metadata: meta{Name: g.Name}, Data: map[string]string{}, file: "kustomization.yaml"}
		for _, f := range g.Files {
			key, file := path.Base(f), f
			if k, v, ok := strings.Cut(f, "="); ok {
				key, file = k, v
			}
			data := mustRead(tb, filepath.Join(k8sDir, file))
			cm.Data[key] = string(data)
			if key == "gateway.yaml" {
				b.gatewayCfg[g.Name] = data
			}
		}
		for _, l := range g.Literals {
			k, v, _ := strings.Cut(l, "=")
			cm.Data[k] = v
		}
		b.configMaps[g.Name] = cm
	}
	for name, cm := range b.configMaps {
		if v, ok := cm.Data["gateway.yaml"]; ok {
			b.gatewayCfg[name] = []byte(v)
		}
	}
	examples, _ := filepath.Glob(filepath.Join(k8sDir, "*.example.yaml"))
	for _, f := range examples {
		for _, o := range parseDocs(tb, filepath.Base(f), mustRead(tb, f)) {
			if o.Kind == "Secret" {
				b.secrets[o.Metadata.Name] = o
			}
		}
	}
	return b
}

func (b bundle) byKind(kind string) []object {
	var out []object
	for _, o := range b.objects {
		if o.Kind == kind {
			out = append(out, o)
		}
	}
	return out
}

// workload is one pod template with where it came from.
type workload struct {
	obj  object
	spec workloadSpec
}

func (b bundle) workloads(tb testing.TB) []workload {
	tb.Helper()
	var out []workload
	for _, o := range b.objects {
		if o.Kind == "StatefulSet" || o.Kind == "Deployment" {
			out = append(out, workload{o, decodeSpec[workloadSpec](tb, o)})
		}
	}
	if len(out) == 0 {
		tb.Fatal("no StatefulSet or Deployment in the Kubernetes example")
	}
	return out
}

// resolvePort finds a container port by number or name.
func resolvePort(c container, port string) (int, bool) {
	for _, p := range c.Ports {
		if p.Name != "" && p.Name == port || strconv.Itoa(p.ContainerPort) == port {
			return p.ContainerPort, true
		}
	}
	return 0, false
}

func matches(selector, labels map[string]string) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func flagValue(args []string, flag string) string {
	for i, a := range args {
		if a == flag && i+1 < len(args) {
			return args[i+1]
		}
		if v, ok := strings.CutPrefix(a, flag+"="); ok {
			return v
		}
	}
	return ""
}

// ---- Kubernetes checks ------------------------------------------------------------------

func TestKustomizationFiles(t *testing.T) {
	b := loadBundle(t)
	if len(b.kust.Resources) == 0 {
		t.Fatal("kustomization lists no resources")
	}
	listed := map[string]bool{"kustomization.yaml": true}
	for _, r := range b.kust.Resources {
		if _, err := os.Stat(filepath.Join(k8sDir, r)); err != nil {
			t.Errorf("kustomization resource %s: %v", r, err)
		}
		listed[r] = true
	}
	for _, g := range b.kust.ConfigMapGenerator {
		for _, f := range g.Files {
			_, file, ok := strings.Cut(f, "=")
			if !ok {
				file = f
			}
			listed[file] = true
		}
	}
	// A committed secretGenerator would put key material in the repository.
	for _, g := range b.kust.SecretGenerator {
		t.Errorf("secretGenerator %q: the vault key must be created out of band, not generated from committed files", g.Name)
	}
	// Every manifest in the folder is either applied or explicitly an example.
	files, _ := filepath.Glob(filepath.Join(k8sDir, "*.yaml"))
	for _, f := range files {
		name := filepath.Base(f)
		if !listed[name] && !strings.HasSuffix(name, ".example.yaml") {
			t.Errorf("%s is neither listed in kustomization.yaml nor named *.example.yaml", name)
		}
		if strings.HasSuffix(name, ".example.yaml") && listed[name] {
			t.Errorf("%s is an example and must not be applied by kustomize", name)
		}
	}
	for _, o := range b.objects {
		if o.APIVersion == "" || o.Metadata.Name == "" {
			t.Errorf("%s: object without apiVersion or name: %+v", o.file, o.Metadata)
		}
		if o.Metadata.Namespace != "" && o.Metadata.Namespace != b.kust.Namespace {
			t.Errorf("%s: %s %s is in namespace %q, kustomization sets %q", o.file, o.Kind, o.Metadata.Name, o.Metadata.Namespace, b.kust.Namespace)
		}
	}
}

func TestExampleSecretsHoldNoKeys(t *testing.T) {
	b := loadBundle(t)
	if len(b.secrets) == 0 {
		t.Fatal("no Secret manifest or example found")
	}
	for name, s := range b.secrets {
		for k, v := range s.Data {
			if strings.TrimSpace(v) != "" {
				t.Errorf("Secret %s (%s): data.%s holds a value; commit only empty placeholders", name, s.file, k)
			}
		}
		for k, v := range s.StringData {
			if strings.TrimSpace(v) != "" {
				t.Errorf("Secret %s (%s): stringData.%s holds a value; commit only empty placeholders", name, s.file, k)
			}
		}
	}
}

func TestWorkloadReferences(t *testing.T) {
	b := loadBundle(t)
	services := map[string]serviceSpec{}
	for _, o := range b.byKind("Service") {
		services[o.Metadata.Name] = decodeSpec[serviceSpec](t, o)
	}
	for _, w := range b.workloads(t) {
		name := w.obj.Kind + " " + w.obj.Metadata.Name
		ps := w.spec.Template.Spec
		if !matches(w.spec.Selector.MatchLabels, w.spec.Template.Metadata.Labels) {
			t.Errorf("%s: selector %v does not match template labels %v", name, w.spec.Selector.MatchLabels, w.spec.Template.Metadata.Labels)
		}
		if w.spec.Replicas == nil || *w.spec.Replicas != 1 {
			t.Errorf("%s: replicas must be 1 (one bbolt writer per volume)", name)
		}
		if w.obj.Kind == "StatefulSet" {
			svc, ok := services[w.spec.ServiceName]
			if !ok || svc.ClusterIP != "None" {
				t.Errorf("%s: serviceName %q must name a headless Service in the bundle", name, w.spec.ServiceName)
			}
		}
		if w.obj.Kind == "Deployment" && w.spec.Strategy.Type != "Recreate" {
			t.Errorf("%s: a Deployment over a ReadWriteOnce volume needs strategy Recreate", name)
		}

		volumes := map[string]volume{}
		for _, v := range ps.Volumes {
			volumes[v.Name] = v
		}
		for _, vct := range w.spec.VolumeClaimTemplates {
			volumes[vct.Metadata.Name] = volume{Name: vct.Metadata.Name}
		}
		// Volumes point at ConfigMaps/Secrets and keys that exist.
		for _, v := range ps.Volumes {
			if v.ConfigMap != nil {
				cm, ok := b.configMaps[v.ConfigMap.Name]
				if !ok {
					t.Errorf("%s: volume %s: ConfigMap %q is not defined", name, v.Name, v.ConfigMap.Name)
				}
				for _, it := range v.ConfigMap.Items {
					if _, ok := cm.Data[it.Key]; !ok {
						t.Errorf("%s: volume %s: ConfigMap %q has no key %q", name, v.Name, v.ConfigMap.Name, it.Key)
					}
				}
			}
			if v.Secret != nil {
				s, ok := b.secrets[v.Secret.SecretName]
				if !ok {
					t.Errorf("%s: volume %s: Secret %q is neither in the bundle nor in an *.example.yaml", name, v.Name, v.Secret.SecretName)
				}
				for _, it := range v.Secret.Items {
					_, inData := s.Data[it.Key]
					_, inString := s.StringData[it.Key]
					if !inData && !inString {
						t.Errorf("%s: volume %s: Secret %q has no key %q", name, v.Name, v.Secret.SecretName, it.Key)
					}
				}
			}
		}
		if ps.TerminationGracePeriodSeconds == nil || time.Duration(*ps.TerminationGracePeriodSeconds)*time.Second < drainBudget {
			t.Errorf("%s: terminationGracePeriodSeconds must be at least %v", name, drainBudget)
		}
		if ps.AutomountServiceAccountToken == nil || *ps.AutomountServiceAccountToken {
			t.Errorf("%s: automountServiceAccountToken should be false (the gateway needs no API access)", name)
		}
		if ps.SecurityContext.RunAsNonRoot == nil || !*ps.SecurityContext.RunAsNonRoot {
			t.Errorf("%s: pod securityContext.runAsNonRoot must be true", name)
		}
		if ps.SecurityContext.RunAsUser != nil && *ps.SecurityContext.RunAsUser == 0 {
			t.Errorf("%s: pod runs as uid 0", name)
		}

		for _, c := range ps.Containers {
			cname := name + " container " + c.Name
			if len(c.Ports) == 0 {
				t.Errorf("%s: no ports", cname)
			}
			mountPaths := map[string]bool{}
			for _, m := range c.VolumeMounts {
				if _, ok := volumes[m.Name]; !ok {
					t.Errorf("%s: volumeMount %q has no volume", cname, m.Name)
				}
				if mountPaths[m.MountPath] {
					t.Errorf("%s: two mounts at %s", cname, m.MountPath)
				}
				mountPaths[m.MountPath] = true
				if v := volumes[m.Name]; v.ConfigMap != nil && m.SubPath != "" {
					t.Errorf("%s: ConfigMap volume %s mounted with subPath: it would never see updates (no hot reload)", cname, m.Name)
				}
			}
			for _, e := range c.Env {
				if e.ValueFrom == nil {
					if regexp.MustCompile(`(?i)KEY|TOKEN|SECRET|PASSWORD`).MatchString(e.Name) && e.Value != "" {
						t.Errorf("%s: env %s has an inline value; use a secretKeyRef", cname, e.Name)
					}
					continue
				}
				if r := e.ValueFrom.SecretKeyRef; r != nil {
					s, ok := b.secrets[r.Name]
					_, inData := s.Data[r.Key]
					_, inString := s.StringData[r.Key]
					if !ok || !inData && !inString {
						t.Errorf("%s: env %s: Secret %s key %s not found", cname, e.Name, r.Name, r.Key)
					}
				}
				if r := e.ValueFrom.ConfigMapKeyRef; r != nil {
					if _, ok := b.configMaps[r.Name].Data[r.Key]; !ok {
						t.Errorf("%s: env %s: ConfigMap %s key %s not found", cname, e.Name, r.Name, r.Key)
					}
				}
			}
			for kind, p := range map[string]*probe{"liveness": c.LivenessProbe, "readiness": c.ReadinessProbe, "startup": c.StartupProbe} {
				if p == nil {
					if kind != "startup" {
						t.Errorf("%s: no %s probe", cname, kind)
					}
					continue
				}
				if p.HTTPGet == nil {
					t.Errorf("%s: %s probe is not an httpGet", cname, kind)
					continue
				}
				if _, ok := resolvePort(c, p.HTTPGet.Port); !ok {
					t.Errorf("%s: %s probe port %q is not a container port", cname, kind, p.HTTPGet.Port)
				}
			}
			if c.LivenessProbe != nil && c.LivenessProbe.HTTPGet != nil && c.LivenessProbe.HTTPGet.Path != "/healthz" {
				t.Errorf("%s: liveness probe should GET /healthz, not %s", cname, c.LivenessProbe.HTTPGet.Path)
			}
			if c.ReadinessProbe != nil && c.ReadinessProbe.HTTPGet != nil && c.ReadinessProbe.HTTPGet.Path != "/readyz" {
				t.Errorf("%s: readiness probe should GET /readyz, not %s", cname, c.ReadinessProbe.HTTPGet.Path)
			}

			sc := c.SecurityContext
			switch {
			case sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
				t.Errorf("%s: allowPrivilegeEscalation must be false", cname)
			case sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem:
				t.Errorf("%s: readOnlyRootFilesystem must be true", cname)
			case !slices.Contains(sc.Capabilities.Drop, "ALL") || len(sc.Capabilities.Add) > 0:
				t.Errorf("%s: capabilities must drop ALL and add none", cname)
			case sc.SeccompProfile.Type != "RuntimeDefault" && ps.SecurityContext.SeccompProfile.Type != "RuntimeDefault":
				t.Errorf("%s: seccompProfile must be RuntimeDefault", cname)
			}
			for _, r := range []string{"cpu", "memory"} {
				if c.Resources.Requests[r] == "" {
					t.Errorf("%s: no %s request", cname, r)
				}
			}
			if c.Resources.Limits["memory"] == "" {
				t.Errorf("%s: no memory limit (provider processes share it)", cname)
			}
			if !mountPaths["/tmp"] {
				t.Errorf("%s: a read-only root filesystem needs a writable /tmp volume", cname)
			}
		}
	}
}

func TestServicesAndPolicies(t *testing.T) {
	b := loadBundle(t)
	ws := b.workloads(t)
	find := func(selector map[string]string) (workload, bool) {
		for _, w := range ws {
			if matches(selector, w.spec.Template.Metadata.Labels) {
				return w, true
			}
		}
		return workload{}, false
	}
	svcs := b.byKind("Service")
	if len(svcs) == 0 {
		t.Fatal("no Service")
	}
	for _, o := range svcs {
		s := decodeSpec[serviceSpec](t, o)
		w, ok := find(s.Selector)
		if !ok {
			t.Errorf("Service %s: selector %v matches no pod template", o.Metadata.Name, s.Selector)
			continue
		}
		for _, p := range s.Ports {
			target := p.TargetPort
			if target == "" {
				target = strconv.Itoa(p.Port)
			}
			found := false
			for _, c := range w.spec.Template.Spec.Containers {
				if _, ok := resolvePort(c, target); ok {
					found = true
				}
			}
			if !found {
				t.Errorf("Service %s port %s: targetPort %q is not a container port of %s", o.Metadata.Name, p.Name, target, w.obj.Metadata.Name)
			}
		}
	}
	nps := b.byKind("NetworkPolicy")
	if len(nps) == 0 {
		t.Fatal("no NetworkPolicy example")
	}
	for _, o := range nps {
		np := decodeSpec[networkPolicySpec](t, o)
		w, ok := find(np.PodSelector.MatchLabels)
		if !ok {
			t.Errorf("NetworkPolicy %s: podSelector matches no pod template", o.Metadata.Name)
			continue
		}
		for _, in := range np.Ingress {
			for _, p := range in.Ports {
				if _, ok := resolvePort(w.spec.Template.Spec.Containers[0], p.Port); !ok {
					t.Errorf("NetworkPolicy %s: ingress port %q is not a container port", o.Metadata.Name, p.Port)
				}
			}
		}
	}
}

// TestConfigMapGatewayConfig checks the mounted gateway.yaml against the pod: the
// listen port is the container port, data_dir is the persistent volume, the vault key
// file is where the Secret is mounted, and the --config flag points into the ConfigMap.
func TestConfigMapGatewayConfig(t *testing.T) {
	b := loadBundle(t)
	if len(b.gatewayCfg) == 0 {
		t.Fatal("no ConfigMap carries gateway.yaml")
	}
	for _, w := range b.workloads(t) {
		ps := w.spec.Template.Spec
		c := ps.Containers[0]
		mounts := map[string]string{} // mount path -> volume name
		for _, m := range c.VolumeMounts {
			mounts[m.MountPath] = m.Name
		}
		volumes := map[string]volume{}
		for _, v := range ps.Volumes {
			volumes[v.Name] = v
		}
		claims := map[string]bool{}
		for _, vct := range w.spec.VolumeClaimTemplates {
			claims[vct.Metadata.Name] = true
		}

		cfgPath := flagValue(c.Args, "--config")
		if cfgPath == "" {
			t.Fatalf("container %s: args %v have no --config", c.Name, c.Args)
		}
		vol := volumes[mounts[path.Dir(cfgPath)]]
		if vol.ConfigMap == nil {
			t.Fatalf("--config %s is not inside a ConfigMap directory mount", cfgPath)
		}
		if len(vol.ConfigMap.Items) > 0 && !slices.ContainsFunc(vol.ConfigMap.Items, func(it item) bool { return it.Path == path.Base(cfgPath) }) {
			t.Errorf("ConfigMap volume %s does not project %s", vol.Name, path.Base(cfgPath))
		}
		data, ok := b.gatewayCfg[vol.ConfigMap.Name]
		if !ok {
			t.Fatalf("ConfigMap %s has no gateway.yaml", vol.ConfigMap.Name)
		}
		var cfg gatewayConfig
		if err := yaml.Unmarshal(data, &cfg); err != nil {
			t.Fatalf("gateway.yaml in ConfigMap %s: %v", vol.ConfigMap.Name, err)
		}

		host, port, err := net.SplitHostPort(cfg.Listen)
		if err != nil {
			t.Fatalf("listen %q: %v", cfg.Listen, err)
		}
		if cp, ok := resolvePort(c, port); !ok || strconv.Itoa(cp) != port {
			t.Errorf("gateway.yaml listens on port %s; the container ports are %+v", port, c.Ports)
		}
		if ip := net.ParseIP(host); host == "localhost" || ip != nil && ip.IsLoopback() {
			t.Errorf("listen %q is loopback: the Service could not reach it", cfg.Listen)
		}
		if cfg.Auth.Disabled {
			t.Error("auth.disabled on a non-loopback listen address")
		}
		if !claims[mounts[cfg.DataDir]] {
			t.Errorf("data_dir %s is not the mount of a volumeClaimTemplate (mounts: %v)", cfg.DataDir, mounts)
		}
		if cfg.Vault.KeyFile != "" {
			kv := volumes[mounts[path.Dir(cfg.Vault.KeyFile)]]
			if kv.Secret == nil {
				t.Errorf("vault.key_file %s is not inside a Secret volume mount", cfg.Vault.KeyFile)
			} else if len(kv.Secret.Items) > 0 && !slices.ContainsFunc(kv.Secret.Items, func(it item) bool { return it.Path == path.Base(cfg.Vault.KeyFile) }) {
				t.Errorf("Secret volume %s does not project %s", kv.Name, path.Base(cfg.Vault.KeyFile))
			}
		}
		checkProviderCommands(t, "ConfigMap gateway.yaml", cfg)
		// SIGTERM budget: shutdown.delay + shutdown.drain + provider stop
		// (stdin close 2s + SIGTERM 2s + reap) must fit the grace period.
		dur := func(s string, def time.Duration) time.Duration {
			if s == "" {
				return def
			}
			d, err := time.ParseDuration(s)
			if err != nil {
				t.Fatalf("shutdown duration %q: %v", s, err)
			}
			return d
		}
		need := dur(cfg.Shutdown.Delay, 0) + dur(cfg.Shutdown.Drain, 10*time.Second) + 5*time.Second
		for _, w := range b.workloads(t) {
			if g := w.spec.Template.Spec.TerminationGracePeriodSeconds; g == nil || time.Duration(*g)*time.Second < need {
				t.Errorf("terminationGracePeriodSeconds must cover shutdown.delay+drain+provider stop = %v", need)
			}
		}
	}
}

// ---- Dockerfile -------------------------------------------------------------------------

type instruction struct {
	cmd  string // upper-case: FROM, RUN, ...
	args string
	line int
}

type stage struct {
	name, base string
	ins        []instruction
}

// parseDockerfile splits a Dockerfile into stages of instructions, joining continued
// lines and dropping comments.
func parseDockerfile(tb testing.TB, data []byte) []stage {
	tb.Helper()
	var stages []stage
	sc := bufio.NewScanner(bytes.NewReader(data))
	var cur strings.Builder
	start, n := 0, 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "#") || line == "" && cur.Len() == 0 {
			continue
		}
		if cur.Len() == 0 {
			start = n
		}
		if strings.HasSuffix(line, "\\") {
			cur.WriteString(strings.TrimSuffix(line, "\\") + " ")
			continue
		}
		cur.WriteString(line)
		text := cur.String()
		cur.Reset()
		cmd, args, _ := strings.Cut(text, " ")
		in := instruction{cmd: strings.ToUpper(cmd), args: strings.TrimSpace(args), line: start}
		if in.cmd == "FROM" {
			f := strings.Fields(in.args)
			st := stage{base: f[0]}
			if len(f) == 3 && strings.EqualFold(f[1], "AS") {
				st.name = f[2]
			}
			stages = append(stages, st)
			continue
		}
		if len(stages) == 0 {
			if in.cmd != "ARG" {
				tb.Fatalf("Dockerfile:%d: %s before the first FROM", in.line, in.cmd)
			}
			continue
		}
		stages[len(stages)-1].ins = append(stages[len(stages)-1].ins, in)
	}
	return stages
}

func (s stage) all(cmd string) []instruction {
	var out []instruction
	for _, in := range s.ins {
		if in.cmd == cmd {
			out = append(out, in)
		}
	}
	return out
}

func (s stage) last(cmd string) (instruction, bool) {
	all := s.all(cmd)
	if len(all) == 0 {
		return instruction{}, false
	}
	return all[len(all)-1], true
}

// execForm decodes a JSON-array instruction argument such as ["a", "b"].
func execForm(tb testing.TB, in instruction) []string {
	tb.Helper()
	var out []string
	if err := yaml.Unmarshal([]byte(in.args), &out); err != nil || !strings.HasPrefix(in.args, "[") {
		tb.Fatalf("Dockerfile:%d: %s must use the exec (JSON array) form, got %s", in.line, in.cmd, in.args)
	}
	return out
}

// envPairs parses ENV KEY=VALUE ... (and the legacy ENV KEY VALUE).
func envPairs(args string) map[string]string {
	out := map[string]string{}
	f := strings.Fields(args)
	if len(f) >= 2 && !strings.Contains(f[0], "=") {
		out[f[0]] = strings.Join(f[1:], " ")
		return out
	}
	for _, kv := range f {
		k, v, _ := strings.Cut(kv, "=")
		out[k] = v
	}
	return out
}

var secretName = regexp.MustCompile(`(?i)KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL`)

// imageBinaries returns the names the build stage writes to /out/<name>, which the
// runtime stages copy to /usr/local/bin.
func imageBinaries(tb testing.TB, stages []stage) map[string]bool {
	tb.Helper()
	out := map[string]bool{}
	re := regexp.MustCompile(`-o\s+/out/([A-Za-z0-9._-]+)\s+(\./[^\s;]+)`)
	for _, st := range stages {
		for _, in := range st.all("RUN") {
			for _, m := range re.FindAllStringSubmatch(in.args, -1) {
				out[m[1]] = true
				if fi, err := os.Stat(filepath.Join(repoRoot, m[2])); err != nil || !fi.IsDir() {
					tb.Errorf("Dockerfile:%d: go build target %s does not exist", in.line, m[2])
				}
			}
		}
	}
	return out
}

func checkProviderCommands(t *testing.T, what string, cfg gatewayConfig) {
	t.Helper()
	bins := imageBinaries(t, parseDockerfile(t, mustRead(t, dockerfile)))
	for name, p := range cfg.Providers {
		if bin, ok := strings.CutPrefix(p.Command, "/usr/local/bin/"); ok && !bins[bin] {
			t.Errorf("%s: provider %s runs %s, which the Dockerfile does not build", what, name, p.Command)
		}
		for k, v := range p.Env {
			if secretName.MatchString(k) && !strings.HasPrefix(v, "${") {
				t.Errorf("%s: provider %s env %s is inline; use ${secret:NAME}", what, name, k)
			}
		}
	}
}

func TestDockerfile(t *testing.T) {
	stages := parseDockerfile(t, mustRead(t, dockerfile))
	if len(stages) < 2 {
		t.Fatalf("Dockerfile has %d stage(s); want a builder and a runtime", len(stages))
	}
	byName := map[string]stage{}
	for _, st := range stages {
		byName[st.name] = st
	}

	var imageCfg gatewayConfig
	if err := yaml.Unmarshal(mustRead(t, imageConfig), &imageCfg); err != nil {
		t.Fatalf("deploy/gateway.yaml: %v", err)
	}
	_, imagePort, err := net.SplitHostPort(imageCfg.Listen)
	if err != nil {
		t.Fatalf("deploy/gateway.yaml listen: %v", err)
	}

	for _, target := range []string{"runtime", "runtime-node"} {
		t.Run(target, func(t *testing.T) {
			st, ok := byName[target]
			if !ok {
				t.Fatalf("no stage named %s", target)
			}
			user, hasUser := st.last("USER")
			u := strings.Split(strings.TrimSpace(user.args), ":")[0]
			nonroot := hasUser && u != "" && u != "0" && u != "root"
			if !nonroot && !strings.Contains(st.base, "distroless") && !strings.HasSuffix(st.base, ":nonroot") {
				t.Errorf("final stage %s runs as root (USER %q)", target, user.args)
			}
			hc, ok := st.last("HEALTHCHECK")
			if !ok {
				t.Fatal("no HEALTHCHECK")
			}
			_, cmd, ok := strings.Cut(hc.args, "CMD ")
			if !ok {
				t.Fatalf("HEALTHCHECK without CMD: %s", hc.args)
			}
			hcArgs := execForm(t, instruction{cmd: "HEALTHCHECK CMD", args: strings.TrimSpace(cmd), line: hc.line})
			if hcArgs[0] != "/usr/local/bin/switchboard" || !slices.Contains(hcArgs, "healthcheck") || flagValue(hcArgs, "--config") != configInImage {
				t.Errorf("HEALTHCHECK should run switchboard healthcheck --config %s, got %v", configInImage, hcArgs)
			}
			ep, ok := st.last("ENTRYPOINT")
			if !ok || !slices.Contains(execForm(t, ep), "/usr/local/bin/switchboard") {
				t.Errorf("ENTRYPOINT should run /usr/local/bin/switchboard: %s", ep.args)
			}
			cmdIn, ok := st.last("CMD")
			if !ok || flagValue(execForm(t, cmdIn), "--config") != configInImage {
				t.Errorf("CMD should pass --config %s: %s", configInImage, cmdIn.args)
			}
			exposed := false
			for _, in := range st.all("EXPOSE") {
				exposed = exposed || slices.Contains(strings.Fields(in.args), imagePort)
			}
			if !exposed {
				t.Errorf("the image config listens on %s but the stage does not EXPOSE it", imagePort)
			}
			vol, ok := st.last("VOLUME")
			if !ok || !strings.Contains(vol.args, imageCfg.DataDir) {
				t.Errorf("VOLUME should be data_dir %s: %s", imageCfg.DataDir, vol.args)
			}
			if wd, ok := st.last("WORKDIR"); !ok || strings.TrimSpace(wd.args) != imageCfg.DataDir {
				t.Errorf("WORKDIR should be %s", imageCfg.DataDir)
			}
		})
	}

	for _, st := range stages {
		for _, in := range append(st.all("ENV"), st.all("ARG")...) {
			for k, v := range envPairs(in.args) {
				if secretName.MatchString(k) && v != "" {
					t.Errorf("Dockerfile:%d: %s %s carries a value; secrets come at run time", in.line, in.cmd, k)
				}
			}
		}
		for _, in := range st.all("COPY") {
			if strings.Contains(in.args, "--from=") {
				continue
			}
			f := strings.Fields(in.args)
			for _, src := range f[:len(f)-1] {
				if strings.HasPrefix(src, "--") || src == "." {
					continue
				}
				if _, err := os.Stat(filepath.Join(repoRoot, src)); err != nil {
					t.Errorf("Dockerfile:%d: COPY source %s: %v", in.line, src, err)
				}
			}
		}
	}
	if len(imageBinaries(t, stages)) < 3 {
		t.Errorf("the build stage should build the gateway and both example providers")
	}
	checkProviderCommands(t, "deploy/gateway.yaml", imageCfg)
	if host, _, _ := net.SplitHostPort(imageCfg.Listen); host != "0.0.0.0" || imageCfg.Auth.Disabled {
		t.Errorf("deploy/gateway.yaml: a container config must listen on 0.0.0.0 with auth on, got %s (auth.disabled=%v)", imageCfg.Listen, imageCfg.Auth.Disabled)
	}
}

func TestDockerignore(t *testing.T) {
	lines := map[string]bool{}
	for l := range strings.SplitSeq(string(mustRead(t, dockerignore)), "\n") {
		lines[strings.TrimSpace(l)] = true
	}
	for _, want := range []string{".git", "data/", "*.key", "node_modules/", "bin/"} {
		if !lines[want] {
			t.Errorf(".dockerignore does not exclude %s", want)
		}
	}
}

// ---- systemd ----------------------------------------------------------------------------

func TestSystemdUnit(t *testing.T) {
	sections := map[string]map[string][]string{}
	var cur string
	for l := range strings.SplitSeq(string(mustRead(t, systemdUnit)), "\n") {
		l = strings.TrimSpace(l)
		switch {
		case l == "" || strings.HasPrefix(l, "#") || strings.HasPrefix(l, ";"):
		case strings.HasPrefix(l, "["):
			cur = strings.Trim(l, "[]")
			sections[cur] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(l, "=")
			if !ok || cur == "" {
				t.Fatalf("unit line %q is not key=value in a section", l)
			}
			sections[cur][k] = append(sections[cur][k], v)
		}
	}
	svc := sections["Service"]
	get := func(k string) string {
		if v := svc[k]; len(v) > 0 {
			return v[len(v)-1]
		}
		return ""
	}
	execStart := strings.Fields(get("ExecStart"))
	if len(execStart) < 2 || execStart[0] != "/usr/local/bin/switchboard" || execStart[1] != "serve" || flagValue(execStart, "--config") == "" {
		t.Errorf("ExecStart should be /usr/local/bin/switchboard serve --config ...: %v", execStart)
	}
	for k, want := range map[string]string{
		"NoNewPrivileges": "yes",
		"ProtectSystem":   "strict",
		"KillMode":        "mixed",
		"StateDirectory":  "switchboard",
		"PrivateTmp":      "yes",
	} {
		if got := get(k); got != want {
			t.Errorf("%s=%q, want %q", k, got, want)
		}
	}
	if get("DynamicUser") != "yes" && (get("User") == "" || get("User") == "root") {
		t.Error("the service must run as DynamicUser=yes or a non-root User=")
	}
	stop, err := time.ParseDuration(get("TimeoutStopSec"))
	if err != nil || stop != drainBudget {
		t.Errorf("TimeoutStopSec=%q, want the drain budget %v", get("TimeoutStopSec"), drainBudget)
	}
	for k, vs := range svc {
		for _, v := range vs {
			if k == "Environment" && secretName.MatchString(strings.SplitN(v, "=", 2)[0]) {
				t.Errorf("Environment=%s puts a secret in the unit; use LoadCredential", v)
			}
		}
	}
	if sections["Install"]["WantedBy"] == nil {
		t.Error("no [Install] WantedBy")
	}
	// Every binary and the drain budget agree with the Kubernetes example.
	b := loadBundle(t)
	for _, w := range b.workloads(t) {
		g := w.spec.Template.Spec.TerminationGracePeriodSeconds
		if g == nil || time.Duration(*g)*time.Second != stop {
			t.Errorf("terminationGracePeriodSeconds (%s) and TimeoutStopSec (%v) disagree", fmtSeconds(g), stop)
		}
	}
	if _, err := exec.LookPath("systemd-analyze"); err == nil {
		checkWithSystemdAnalyze(t)
	}
}

func fmtSeconds(p *int) string {
	if p == nil {
		return "unset"
	}
	return (time.Duration(*p) * time.Second).String()
}

// checkWithSystemdAnalyze lets systemd itself parse the unit (with a stand-in binary,
// since the real one is not installed at /usr/local/bin here).
func checkWithSystemdAnalyze(t *testing.T) {
	t.Helper()
	data := strings.ReplaceAll(string(mustRead(t, systemdUnit)), "/usr/local/bin/switchboard", "/bin/true")
	unit := filepath.Join(t.TempDir(), "switchboard.service")
	if err := os.WriteFile(unit, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("systemd-analyze", "verify", unit).CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}

func TestDocsMention(t *testing.T) {
	doc := string(mustRead(t, filepath.Join(repoRoot, "docs", "deploy.md")))
	for _, want := range []string{"runtime-node", "kubectl apply -k", "..data", "Mcp-Session-Id", "StatefulSet", "switchboard.service"} {
		if !strings.Contains(doc, want) {
			t.Errorf("docs/deploy.md does not mention %q", want)
		}
	}
}
