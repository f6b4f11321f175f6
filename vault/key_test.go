package vault_test

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"
	"gopkg.in/yaml.v3"

	"github.com/switchboard-mcp/switchboard"
	"github.com/switchboard-mcp/switchboard/vault"
)

func TestParseKey(t *testing.T) {
	raw := bytes.Repeat([]byte{0xfb}, vault.KeySize) // encodes with '+', '/', '-', '_'
	tests := []struct {
		name    string
		in      string
		wantErr string
	}{
		{name: "std padded", in: base64.StdEncoding.EncodeToString(raw)},
		{name: "std raw", in: base64.RawStdEncoding.EncodeToString(raw)},
		{name: "url padded", in: base64.URLEncoding.EncodeToString(raw)},
		{name: "url raw", in: base64.RawURLEncoding.EncodeToString(raw)},
		{name: "whitespace", in: "  " + base64.StdEncoding.EncodeToString(raw) + "\n"},
		{name: "empty", in: "", wantErr: "invalid vault key: empty"},
		{name: "short", in: base64.StdEncoding.EncodeToString(raw[:16]), wantErr: "want base64 of 32 bytes, got 16 bytes"},
		{name: "long", in: base64.StdEncoding.EncodeToString(append(raw, 1)), wantErr: "got 33 bytes"},
		{name: "not base64", in: "this is not a key!!", wantErr: "not base64"},
		{name: "raw 32 bytes", in: string(raw), wantErr: "not base64"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, err := vault.ParseKey(tt.in)
			if tt.wantErr != "" {
				if err == nil || !errors.Is(err, vault.ErrInvalidKey) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want ErrInvalidKey containing %q", err, tt.wantErr)
				}
				if tt.in != "" && strings.Contains(err.Error(), strings.TrimSpace(tt.in)) {
					t.Fatalf("error echoes the key input: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want, _ := vault.NewKey(raw)
			if !k.Equal(want) {
				t.Fatal("decoded key differs")
			}
		})
	}
}

func TestNewKeyLength(t *testing.T) {
	for _, n := range []int{0, 16, 31, 33, 64} {
		if _, err := vault.NewKey(make([]byte, n)); !errors.Is(err, vault.ErrInvalidKey) {
			t.Errorf("NewKey(%d bytes) err = %v, want ErrInvalidKey", n, err)
		}
	}
	if _, err := openVault(filepath.Join(t.TempDir(), "v.db"), vault.Key{}, vault.Options{}); !errors.Is(err, vault.ErrInvalidKey) {
		t.Errorf("Open(zero key) err = %v, want ErrInvalidKey", err)
	}
}

func TestKeyZero(t *testing.T) {
	k := vault.GenerateKey()
	cp := k
	if k.IsZero() || k.Equal(vault.GenerateKey()) {
		t.Fatal("generated key is zero or repeats")
	}
	k.Zero()
	if !k.IsZero() || !cp.IsZero() {
		t.Fatal("Zero did not wipe the key and its copies")
	}
	if !(vault.Key{}).IsZero() {
		t.Fatal("zero Key is not IsZero")
	}
}

func TestLoadKey(t *testing.T) {
	envKey, fileKey, dirKey := vault.GenerateKey(), vault.GenerateKey(), vault.GenerateKey()
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "explicit.key")
	if err := vault.WriteKeyFile(keyFile, fileKey); err != nil {
		t.Fatal(err)
	}
	withDirKey := t.TempDir()
	if err := vault.WriteKeyFile(filepath.Join(withDirKey, vault.KeyFileName), dirKey); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		src     vault.KeySource
		want    vault.Key
		origin  vault.KeyOrigin
		wantErr error
		errText string
	}{
		{name: "env wins", src: vault.KeySource{EnvValue: envKey.Encode(), KeyFile: keyFile, DataDir: withDirKey}, want: envKey, origin: vault.KeyFromEnv},
		{name: "key file next", src: vault.KeySource{KeyFile: keyFile, DataDir: withDirKey}, want: fileKey, origin: vault.KeyFromFile},
		{name: "data dir next", src: vault.KeySource{DataDir: withDirKey, AllowGenerate: true}, want: dirKey, origin: vault.KeyFromDataDir},
		{name: "bad env is an error", src: vault.KeySource{EnvValue: "nope", KeyFile: keyFile}, wantErr: vault.ErrInvalidKey, errText: "SWITCHBOARD_VAULT_KEY"},
		{name: "missing key file is an error", src: vault.KeySource{KeyFile: filepath.Join(dir, "absent.key"), DataDir: withDirKey}, wantErr: os.ErrNotExist, errText: "absent.key"},
		{name: "nothing and no generate", src: vault.KeySource{DataDir: t.TempDir()}, wantErr: vault.ErrNoKey,
			errText: "no vault key: set SWITCHBOARD_VAULT_KEY or vault.key_file in gateway.yaml, or run `switchboard vault init`"},
		{name: "no data dir", src: vault.KeySource{AllowGenerate: true}, wantErr: vault.ErrNoKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, origin, err := vault.LoadKey(tt.src)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) || !strings.Contains(err.Error(), tt.errText) {
					t.Fatalf("err = %v, want %v containing %q", err, tt.wantErr, tt.errText)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if origin != tt.origin || !k.Equal(tt.want) {
				t.Fatalf("origin = %q, key equal = %v; want %q", origin, k.Equal(tt.want), tt.origin)
			}
		})
	}
}

func TestLoadKeyGenerates(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "data") // does not exist yet
	k, origin, err := vault.LoadKey(vault.KeySource{DataDir: dataDir, AllowGenerate: true})
	if err != nil {
		t.Fatal(err)
	}
	if origin != vault.KeyGenerated {
		t.Fatalf("origin = %q, want generated", origin)
	}
	path := filepath.Join(dataDir, vault.KeyFileName)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode = %v, want 0600", fi.Mode().Perm())
	}
	if got := strings.TrimSpace(string(readFile(t, path))); got != k.Encode() {
		t.Fatal("key file does not hold the generated key as base64")
	}
	// The second load finds the same key and does not overwrite it.
	k2, origin, err := vault.LoadKey(vault.KeySource{DataDir: dataDir, AllowGenerate: true})
	if err != nil || origin != vault.KeyFromDataDir || !k2.Equal(k) {
		t.Fatalf("reload: origin %q, equal %v, err %v", origin, k2.Equal(k), err)
	}
	if err := vault.WriteKeyFile(path, vault.GenerateKey()); !errors.Is(err, os.ErrExist) {
		t.Fatalf("WriteKeyFile over an existing file: err = %v, want ErrExist", err)
	}
}

// TestKeyAndSecretRedaction renders a Key and a Secret read from the vault every
// way a log line or error could, and scans the output for the plaintext.
func TestKeyAndSecretRedaction(t *testing.T) {
	v, _, key := MustOpen(t)
	c := canary(t)
	if err := v.Set("CANARY", []byte(c)); err != nil {
		t.Fatal(err)
	}
	sec, err := v.Get("CANARY")
	if err != nil {
		t.Fatal(err)
	}
	if sec.Reveal() != c {
		t.Fatal("round trip failed")
	}
	type holder struct {
		Key    vault.Key
		Secret switchboard.Secret
		key    vault.Key // unexported: fmt cannot call its methods
	}
	h := holder{Key: key, Secret: sec, key: key}

	var out bytes.Buffer
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d"} {
		fmt.Fprintf(&out, verb+"\n", key)
		fmt.Fprintf(&out, verb+"\n", sec)
		fmt.Fprintf(&out, verb+"\n", h)
		fmt.Fprintf(&out, verb+"\n", &h)
	}
	j, err := json.Marshal(h)
	if err != nil {
		t.Fatal(err)
	}
	out.Write(j)
	y, err := yaml.Marshal(h)
	if err != nil {
		t.Fatal(err)
	}
	out.Write(y)

	zl := zerolog.New(&out).Level(zerolog.TraceLevel)
	zl.Trace().Interface("key", key).Interface("h", h).Any("sec", sec).Stringer("ks", key).Stringer("ss", sec).Msg("trace")
	zl.Error().Err(fmt.Errorf("wrapped %v %s", key, sec)).Msg("error")
	sl := slog.New(slog.NewJSONHandler(&out, &slog.HandlerOptions{Level: slog.LevelDebug}))
	sl.Debug("slog", "key", key, "holder", h)
	sl2 := slog.New(slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelDebug}))
	sl2.Debug("slog", "key", key)

	s := out.String()
	raw, _ := base64.StdEncoding.DecodeString(key.Encode())
	for what, needle := range map[string]string{
		"canary": c, "canary base64": base64.StdEncoding.EncodeToString([]byte(c)), "canary hex": hex.EncodeToString([]byte(c)),
		"key base64": key.Encode(), "key hex": hex.EncodeToString(raw), "key raw": string(raw),
	} {
		if strings.Contains(s, needle) || strings.Contains(strings.ToLower(s), strings.ToLower(needle)) {
			t.Errorf("%s leaked into output:\n%s", what, s)
		}
	}
	if !strings.Contains(s, switchboard.Redacted) {
		t.Fatalf("output never shows %q:\n%s", switchboard.Redacted, s)
	}
}
