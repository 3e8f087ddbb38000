package cli

import (
	"bufio"
	"flag"
	"os"
	"strings"

	"github.com/samlha/samlha/stickyproxy/affinity"
)

// KeyRing is a pair of flags that give a ring of secret keys: --NAME,
// repeatable, and --NAME-file, a file with one key a line (blank lines and
// lines starting with # skipped), added after the --NAME keys. The first key
// seals or signs; every key opens or verifies, so keys rotate: add the new
// key second, then move it first, then drop the old one.
//
// A secret is 32 bytes as base64 (standard or URL alphabet, padded or not)
// or as 64 hex digits, or any string of at least 16 bytes (hashed to 32);
// affinity.DeriveKey is the one definition of that format, for stickyproxy's
// --cookie-key and samlsp's --session-key alike.
type KeyRing struct {
	name    string
	secrets StringList
	file    string
}

// Register defines --name and --name-file on fs; usage describes --name.
func (k *KeyRing) Register(fs *flag.FlagSet, name, usage string) {
	k.name = name
	fs.Var(&k.secrets, name, usage)
	fs.StringVar(&k.file, name+"-file", "", "`file` with --"+name+" secrets, one per line, the first seals (added after any --"+name+"); lines starting with # are comments")
}

// Keys returns the ring's keys, first the one that seals, recording each
// problem (a file that cannot be read, a secret too short) on p by flag
// name and position, never printing a secret. It returns nil when no key
// was given.
func (k *KeyRing) Keys(p *Problems) [][32]byte {
	secrets := append([]string(nil), k.secrets...)
	if k.file != "" {
		fl, err := ReadLines(k.file)
		if err != nil {
			p.Addf("--%s-file: %v", k.name, err)
		}
		secrets = append(secrets, fl...)
	}
	var keys [][32]byte
	for i, s := range secrets {
		key, err := affinity.DeriveKey(s)
		if err != nil {
			p.Addf("--%s #%d: %v", k.name, i+1, err)
			continue
		}
		keys = append(keys, key)
	}
	return keys
}

// ReadLines returns the lines of the file at path, trimmed, without blank
// lines and lines starting with #.
func ReadLines(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return out, sc.Err()
}
