package switchboard

import "testing"

func TestStoreChangeCovers(t *testing.T) {
	tests := []struct {
		name        string
		c           StoreChange
		bucket, key string
		want        bool
	}{
		{"anything", StoreChange{}, "users", "ann", true},
		{"the key", StoreChange{Bucket: "users", Key: "ann"}, "users", "ann", true},
		{"another key", StoreChange{Bucket: "users", Key: "bob"}, "users", "ann", false},
		{"another bucket", StoreChange{Bucket: "prefs", Key: "ann"}, "users", "ann", false},
		{"the whole bucket", StoreChange{Bucket: "users"}, "users", "ann", true},
		{"a prefix of the key", StoreChange{Bucket: "c", Key: "ann\x1f", Prefix: true}, "c", "ann\x1fgh", true},
		{"a prefix of another key", StoreChange{Bucket: "c", Key: "ann\x1f", Prefix: true}, "c", "annie\x1fgh", false},
		{"a key that is no prefix", StoreChange{Bucket: "c", Key: "ann"}, "c", "ann\x1fgh", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.c.Covers(tt.bucket, tt.key); got != tt.want {
				t.Errorf("%+v.Covers(%q, %q) = %v, want %v", tt.c, tt.bucket, tt.key, got, tt.want)
			}
		})
	}
	if !ChangesTouch([]StoreChange{{Bucket: "a"}, {Bucket: "b", Key: "k"}}, "x", "b") || ChangesTouch([]StoreChange{{Bucket: "a"}}, "b") ||
		!ChangesTouch([]StoreChange{{}}, "b") || ChangesTouch(nil, "b") {
		t.Error("ChangesTouch")
	}
}
