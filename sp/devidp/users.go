package devidp

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
)

// User is a user the IdP knows, with the attributes its assertions carry.
// The JSON field names are those of a users file (see LoadUsersFile).
type User struct {
	Name       string   `json:"name"`
	Password   string   `json:"password"`
	Email      string   `json:"email,omitempty"`
	Groups     []string `json:"groups,omitempty"`
	CommonName string   `json:"common_name,omitempty"`
	GivenName  string   `json:"given_name,omitempty"`
	Surname    string   `json:"surname,omitempty"`
}

// DefaultUsers are the users a devidp has when none are configured:
//
//	alice / alice-password  alice@example.com  groups: staff
//	bob   / bob-password    bob@example.com    groups: staff, admins
func DefaultUsers() []User {
	return []User{
		{Name: "alice", Password: "alice-password", Email: "alice@example.com", Groups: []string{"staff"}, CommonName: "Alice Example", GivenName: "Alice", Surname: "Example"},
		{Name: "bob", Password: "bob-password", Email: "bob@example.com", Groups: []string{"staff", "admins"}, CommonName: "Bob Example", GivenName: "Bob", Surname: "Example"},
	}
}

// ParseUsers parses users written as
//
//	name:password[:email[:group,group...]]
//
// with entries separated by semicolons or newlines, such as
// "carol:carol-pw:carol@example.com:staff,admins;dave:dave-pw". A password
// holding ':' or ';' needs a users file (LoadUsersFile).
func ParseUsers(s string) ([]User, error) {
	var users []User
	for _, entry := range strings.FieldsFunc(s, func(r rune) bool { return r == ';' || r == '\n' }) {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		parts := strings.SplitN(entry, ":", 4)
		if len(parts) < 2 {
			return nil, fmt.Errorf("user %q: want name:password[:email[:groups]]", redactEntry(entry))
		}
		u := User{Name: strings.TrimSpace(parts[0]), Password: parts[1]}
		if len(parts) > 2 {
			u.Email = strings.TrimSpace(parts[2])
		}
		if len(parts) > 3 {
			for _, g := range strings.Split(parts[3], ",") {
				if g = strings.TrimSpace(g); g != "" {
					u.Groups = append(u.Groups, g)
				}
			}
		}
		users = append(users, u)
	}
	return users, ValidateUsers(users)
}

// redactEntry hides the password of a users entry, for error messages.
func redactEntry(entry string) string {
	name, _, _ := strings.Cut(entry, ":")
	return name + ":…"
}

// LoadUsersFile reads users from a JSON file holding an array of User:
//
//	[{"name": "carol", "password": "carol-pw", "email": "carol@example.com",
//	  "groups": ["staff"], "common_name": "Carol Example"}]
func LoadUsersFile(path string) ([]User, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var users []User
	if err := dec.Decode(&users); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if err := ValidateUsers(users); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return users, nil
}

// ValidateUsers checks that every user has a usable, unique name and a
// password.
func ValidateUsers(users []User) error {
	var errs []error
	seen := map[string]bool{}
	for i, u := range users {
		switch {
		case u.Name == "":
			errs = append(errs, fmt.Errorf("user %d has no name", i+1))
		case strings.ContainsAny(u.Name, "/?#% \t\r\n"):
			errs = append(errs, fmt.Errorf("user name %q: use no '/', '?', '#', '%%' or white space", u.Name))
		case seen[u.Name]:
			errs = append(errs, fmt.Errorf("user %q is given twice", u.Name))
		}
		seen[u.Name] = true
		if u.Password == "" {
			errs = append(errs, fmt.Errorf("user %q has no password", u.Name))
		}
	}
	return errors.Join(errs...)
}
