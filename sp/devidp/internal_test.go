package devidp

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/crewjam/saml/samlidp"
	"golang.org/x/crypto/bcrypt"
)

func TestPasswordsUseTheConfiguredBcryptCost(t *testing.T) {
	t.Parallel()
	key, cert, err := GenerateKeyPair("devidp-internal-test", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	for _, cost := range []int{0, bcrypt.MinCost + 1} {
		s, err := New(Config{PublicURL: "http://127.0.0.1:9000", Key: key, Certificate: cert, BcryptCost: cost})
		if err != nil {
			t.Fatal(err)
		}
		var u samlidp.User
		if err := s.idp.Store.Get("/users/alice", &u); err != nil {
			t.Fatal(err)
		}
		got, err := bcrypt.Cost(u.HashedPassword)
		want := cost
		if want == 0 {
			want = bcrypt.MinCost
		}
		if err != nil || got != want {
			t.Errorf("BcryptCost %d: stored hash cost %d (%v), want %d", cost, got, err, want)
		}
	}
}

func TestSlogAdapterLevels(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	a := slogAdapter{slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	a.Printf("ERROR: Invalid password for user %q", "alice")
	a.Print("WARNING: ", "careful")
	a.Println("User authenticated")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	want := []string{
		`level=ERROR msg="Invalid password for user \"alice\"" component=samlidp`,
		`level=WARN msg=careful component=samlidp`,
		`level=INFO msg="User authenticated" component=samlidp`,
	}
	if len(lines) != len(want) {
		t.Fatalf("log:\n%s", buf.String())
	}
	for i := range want {
		if !strings.HasSuffix(lines[i], want[i]) {
			t.Errorf("line %d = %q, want suffix %q", i, lines[i], want[i])
		}
	}
}
