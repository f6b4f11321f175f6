package vault

import "github.com/switchboard-mcp/switchboard"

// SetLegacy stores a shared secret under any valid name, reserved or not, the
// way versions before the internal-key bucket stored the gateway's own keys.
func (v *Vault) SetLegacy(name string, value []byte) error { return v.set(name, value) }

// Store returns the store the vault keeps its entries in.
func (v *Vault) Store() switchboard.Store { return v.st }

// CachedKey returns the cached data key id, as a reader takes it.
func (v *Vault) CachedKey(id string) []byte {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return v.keys[id]
}
