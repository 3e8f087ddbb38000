package thirdparty

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
)

// ErrToolMissing says that a program a part needs is not installed; the
// error names it and the Debian package that has it.
var ErrToolMissing = errors.New("not installed")

// debianPackage names the package that installs each tool.
var debianPackage = map[string]string{
	"nginx":   "nginx",
	"caddy":   "caddy",
	"haproxy": "haproxy",
	"php":     "php-cli",
}

// FindTool returns the path of a program, looking in the sbin directories
// too (Debian installs nginx and haproxy in /usr/sbin, which a non-root
// PATH lacks). The error wraps ErrToolMissing and names the package.
func FindTool(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/usr/local/sbin", "/sbin"} {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	pkg := debianPackage[name]
	if pkg == "" {
		pkg = name
	}
	return "", fmt.Errorf("%s is %w (apt-get install -y %s)", name, ErrToolMissing, pkg)
}

// Place returns conf with every address that is a key of addrs replaced
// by its value: a reference configuration moved to the ports of a test,
// nothing else changed. A key that conf does not contain is an error, so
// a reference file that lost an address is not run half-placed.
func Place(conf string, addrs map[string]string) (string, error) {
	var missing, pairs []string
	keys := make([]string, 0, len(addrs))
	for k := range addrs {
		keys = append(keys, k)
	}
	// Longest first, so that a key that is a prefix of another
	// ("127.0.0.1:808" of "127.0.0.1:8080") cannot take its place.
	sort.Slice(keys, func(i, j int) bool { return len(keys[i]) > len(keys[j]) })
	for _, k := range keys {
		if !strings.Contains(conf, k) {
			missing = append(missing, k)
		}
		pairs = append(pairs, k, addrs[k])
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		return "", fmt.Errorf("the configuration has no %s any more: cannot place it", strings.Join(missing, ", "))
	}
	return strings.NewReplacer(pairs...).Replace(conf), nil
}
