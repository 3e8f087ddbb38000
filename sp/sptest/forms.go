package sptest

import (
	"bytes"
	"net/url"
	"strings"

	"golang.org/x/net/html"
	"golang.org/x/net/html/atom"
)

// form is an HTML form found on a page.
type form struct {
	method      string // upper case; GET when the form names none
	action      *url.URL
	fields      url.Values // the values a submission sends (no submit button)
	password    bool       // it has a password input: a login form
	fieldNames  []string   // names of its inputs, in document order
	autoSubmits bool       // it carries SAMLRequest or SAMLResponse
}

// has reports whether the form has an input named name.
func (f *form) has(name string) bool {
	for _, n := range f.fieldNames {
		if n == name {
			return true
		}
	}
	return false
}

// parseForms returns the forms of the HTML document body, served at base,
// with their actions resolved (an empty action is the page itself).
func parseForms(base *url.URL, body []byte) []*form {
	doc, err := html.Parse(bytes.NewReader(body))
	if err != nil {
		return nil
	}
	var forms []*form
	var cur *form
	var walk func(n *html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode {
			switch n.DataAtom {
			case atom.Base:
				if href, ok := attr(n, "href"); ok {
					if u, err := base.Parse(href); err == nil {
						base = u
					}
				}
			case atom.Form:
				f := &form{method: strings.ToUpper(attrOr(n, "method", "GET")), fields: url.Values{}}
				if f.method != "POST" {
					f.method = "GET"
				}
				action, _ := attr(n, "action")
				if u, err := base.Parse(strings.TrimSpace(action)); err == nil {
					f.action = u
				}
				forms = append(forms, f)
				prev := cur
				cur = f
				for c := n.FirstChild; c != nil; c = c.NextSibling {
					walk(c)
				}
				cur = prev
				return
			case atom.Input:
				if cur != nil {
					addInput(cur, n)
				}
			case atom.Textarea:
				if cur != nil {
					if name, ok := attr(n, "name"); ok && name != "" {
						cur.fieldNames = append(cur.fieldNames, name)
						cur.fields.Add(name, textContent(n))
					}
				}
			case atom.Select:
				if cur != nil {
					addSelect(cur, n)
				}
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(doc)
	for _, f := range forms {
		f.autoSubmits = f.has("SAMLRequest") || f.has("SAMLResponse")
	}
	return forms
}

// addInput adds the value an <input> contributes to a submission.
func addInput(f *form, n *html.Node) {
	name, _ := attr(n, "name")
	typ := strings.ToLower(attrOr(n, "type", "text"))
	if typ == "password" {
		f.password = true
	}
	if name == "" {
		return
	}
	f.fieldNames = append(f.fieldNames, name)
	switch typ {
	case "submit", "image", "button", "reset", "file":
		return // sent only when clicked, or not at all
	case "checkbox", "radio":
		if _, checked := attr(n, "checked"); !checked {
			return
		}
		f.fields.Add(name, attrOr(n, "value", "on"))
	default:
		v, _ := attr(n, "value")
		f.fields.Add(name, v)
	}
}

// addSelect adds the selected option of a <select> (the first one if none
// is marked selected).
func addSelect(f *form, n *html.Node) {
	name, ok := attr(n, "name")
	if !ok || name == "" {
		return
	}
	f.fieldNames = append(f.fieldNames, name)
	var first, selected *html.Node
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode && n.DataAtom == atom.Option {
			if first == nil {
				first = n
			}
			if _, ok := attr(n, "selected"); ok && selected == nil {
				selected = n
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(n)
	if selected == nil {
		selected = first
	}
	if selected != nil {
		v, ok := attr(selected, "value")
		if !ok {
			v = strings.TrimSpace(textContent(selected))
		}
		f.fields.Add(name, v)
	}
}

func attr(n *html.Node, key string) (string, bool) {
	for _, a := range n.Attr {
		if a.Namespace == "" && strings.EqualFold(a.Key, key) {
			return a.Val, true
		}
	}
	return "", false
}

func attrOr(n *html.Node, key, def string) string {
	if v, ok := attr(n, key); ok && v != "" {
		return v
	}
	return def
}

func textContent(n *html.Node) string {
	var b strings.Builder
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.TextNode {
			b.WriteString(n.Data)
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(n)
	return b.String()
}
