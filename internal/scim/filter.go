package scim

import (
	"net/http"
	"strings"
	"time"

	filter "github.com/scim2/filter-parser/v2"
)

// userAttributes are the attributes of the User schema, lower-cased: a
// filter or a path may name them. The ledger keeps only some; the others
// are absent from every user.
var userAttributes = map[string]bool{
	"id": true, "externalid": true, "username": true, "name": true, "displayname": true,
	"nickname": true, "profileurl": true, "title": true, "usertype": true, "preferredlanguage": true,
	"locale": true, "timezone": true, "active": true, "password": true, "emails": true,
	"phonenumbers": true, "ims": true, "photos": true, "addresses": true, "groups": true,
	"entitlements": true, "roles": true, "x509certificates": true, "meta": true, "schemas": true,
}

// caseExact are the string attributes compared exactly (RFC 7643: id is
// caseExact; userName, emails and names are not).
var caseExact = map[string]bool{"id": true, "externalid": true, "meta.location": true, "meta.version": true}

// isExtension reports whether uri names a schema extension.
func isExtension(uri string) bool {
	return len(uri) >= len(ExtensionPrefix) && strings.EqualFold(uri[:len(ExtensionPrefix)], ExtensionPrefix)
}

// MaxFilterLen bounds a filter's length, and so the work of parsing it.
const MaxFilterLen = 4096

// compileFilter parses a filter (RFC 7644 section 3.4.2.2) with the
// scim2 filter parser and returns a predicate over rendered resources.
func compileFilter(raw string) (func(map[string]any) bool, error) {
	if len(raw) > MaxFilterLen {
		return nil, &Error{Status: http.StatusBadRequest, ScimType: "invalidFilter", Detail: "the filter is longer than 4096 bytes"}
	}
	expr, err := filter.ParseFilter([]byte(raw))
	if err != nil {
		return nil, &Error{Status: http.StatusBadRequest, ScimType: "invalidFilter", Detail: "the filter is not valid SCIM filter syntax (RFC 7644 section 3.4.2.2)", err: err}
	}
	if err := checkExpr(expr); err != nil {
		return nil, err
	}
	return func(res map[string]any) bool { return eval(expr, res) }, nil
}

func checkExpr(e filter.Expression) error {
	switch x := e.(type) {
	case *filter.LogicalExpression:
		if err := checkExpr(x.Left); err != nil {
			return err
		}
		return checkExpr(x.Right)
	case *filter.NotExpression:
		return checkExpr(x.Expression)
	case *filter.ValuePath:
		return checkPath(x.AttributePath)
	case *filter.AttributeExpression:
		return checkPath(x.AttributePath)
	}
	return &Error{Status: http.StatusBadRequest, ScimType: "invalidFilter", Detail: "unsupported filter expression"}
}

func checkPath(p filter.AttributePath) error {
	uri := p.URI()
	if uri != "" && !strings.EqualFold(uri, SchemaUser) {
		if isExtension(uri) {
			return nil
		}
		return &Error{Status: http.StatusBadRequest, ScimType: "invalidFilter", Detail: "the filter names a schema this service does not know: " + uri}
	}
	if !userAttributes[strings.ToLower(p.AttributeName)] {
		return &Error{Status: http.StatusBadRequest, ScimType: "invalidFilter", Detail: "the filter names an attribute the User schema does not have: " + p.AttributeName}
	}
	return nil
}

func eval(e filter.Expression, obj map[string]any) bool {
	switch x := e.(type) {
	case *filter.LogicalExpression:
		if x.Operator == filter.AND {
			return eval(x.Left, obj) && eval(x.Right, obj)
		}
		return eval(x.Left, obj) || eval(x.Right, obj)
	case *filter.NotExpression:
		return !eval(x.Expression, obj)
	case *filter.ValuePath:
		if x.AttributePath.URI() != "" && !strings.EqualFold(x.AttributePath.URI(), SchemaUser) {
			return false
		}
		v, _ := get(obj, x.AttributePath.AttributeName)
		for _, item := range asList(v) {
			if sub, ok := item.(map[string]any); ok && eval(x.ValueFilter, sub) {
				return true
			}
		}
		return false
	case *filter.AttributeExpression:
		if x.AttributePath.URI() != "" && !strings.EqualFold(x.AttributePath.URI(), SchemaUser) {
			return x.Operator == filter.NE
		}
		vals := values(obj, x.AttributePath)
		key := strings.ToLower(x.AttributePath.AttributeName)
		if s := x.AttributePath.SubAttributeName(); s != "" {
			key += "." + strings.ToLower(s)
		}
		if x.Operator == filter.PR {
			for _, v := range vals {
				if present(v) {
					return true
				}
			}
			return false
		}
		if x.Operator == filter.NE {
			for _, v := range vals {
				if compare(filter.EQ, v, x.CompareValue, caseExact[key]) {
					return false
				}
			}
			return true
		}
		for _, v := range vals {
			if compare(x.Operator, v, x.CompareValue, caseExact[key]) {
				return true
			}
		}
	}
	return false
}

// values returns the values an attribute path reaches in obj: several for
// a multi-valued attribute; a multi-valued attribute of objects without a
// sub-attribute means their "value".
func values(obj map[string]any, p filter.AttributePath) []any {
	v, ok := get(obj, p.AttributeName)
	if !ok {
		return nil
	}
	sub := p.SubAttributeName()
	var out []any
	for _, item := range asList(v) {
		m, isObj := item.(map[string]any)
		switch {
		case sub != "" && isObj:
			if sv, ok := get(m, sub); ok {
				out = append(out, sv)
			}
		case sub != "":
		case isObj:
			if sv, ok := get(m, "value"); ok {
				out = append(out, sv)
			}
		default:
			out = append(out, item)
		}
	}
	return out
}

func asList(v any) []any {
	if l, ok := v.([]any); ok {
		return l
	}
	if v == nil {
		return nil
	}
	return []any{v}
}

func present(v any) bool {
	switch x := v.(type) {
	case nil:
		return false
	case string:
		return x != ""
	case []any:
		return len(x) > 0
	case map[string]any:
		return len(x) > 0
	}
	return true
}

func compare(op filter.CompareOperator, have, want any, exact bool) bool {
	switch h := have.(type) {
	case bool:
		w, err := boolOf("", want)
		if err != nil {
			return false
		}
		return op == filter.EQ && h == w
	case string:
		w, ok := want.(string)
		if !ok {
			return false
		}
		if ht, err := time.Parse(time.RFC3339Nano, h); err == nil {
			if wt, err := time.Parse(time.RFC3339Nano, w); err == nil {
				return order(op, ht.Compare(wt))
			}
		}
		if !exact {
			h, w = strings.ToLower(h), strings.ToLower(w)
		}
		switch op {
		case filter.EQ:
			return h == w
		case filter.CO:
			return strings.Contains(h, w)
		case filter.SW:
			return strings.HasPrefix(h, w)
		case filter.EW:
			return strings.HasSuffix(h, w)
		}
		return order(op, strings.Compare(h, w))
	}
	return false
}

func order(op filter.CompareOperator, c int) bool {
	switch op {
	case filter.EQ:
		return c == 0
	case filter.GT:
		return c > 0
	case filter.GE:
		return c >= 0
	case filter.LT:
		return c < 0
	case filter.LE:
		return c <= 0
	}
	return false
}

// selection is the attributes and excludedAttributes of a request (RFC
// 7644 section 3.4.2.5), lower-cased, as "attr" or "attr.sub".
type selection struct {
	include, exclude map[string]bool
}

func parseSelection(r *http.Request) (selection, error) {
	q := r.URL.Query()
	parse := func(v string) map[string]bool {
		if strings.TrimSpace(v) == "" {
			return nil
		}
		out := map[string]bool{}
		for _, a := range strings.Split(v, ",") {
			a = strings.TrimSpace(a)
			if len(a) > len(SchemaUser)+1 && strings.EqualFold(a[:len(SchemaUser)+1], SchemaUser+":") {
				a = a[len(SchemaUser)+1:]
			}
			if a != "" {
				out[strings.ToLower(a)] = true
			}
		}
		return out
	}
	s := selection{include: parse(q.Get("attributes")), exclude: parse(q.Get("excludedAttributes"))}
	if s.include != nil && s.exclude != nil {
		return s, invalidValue("give attributes or excludedAttributes, not both")
	}
	return s, nil
}

// always are the attributes returned whatever a selection says.
var always = map[string]bool{"id": true, "schemas": true}

// apply returns res with only the attributes the selection keeps.
func (s selection) apply(res map[string]any) map[string]any {
	if s.include == nil && s.exclude == nil {
		return res
	}
	out := map[string]any{}
	for k, v := range res {
		lk := strings.ToLower(k)
		switch {
		case always[lk]:
			out[k] = v
		case s.include != nil:
			if s.include[lk] {
				out[k] = v
			} else if subs := subsOf(s.include, lk); subs != nil {
				out[k] = keepSubs(v, func(sub string) bool { return subs[sub] })
			}
		default:
			if s.exclude[lk] {
				continue
			}
			if subs := subsOf(s.exclude, lk); subs != nil {
				out[k] = keepSubs(v, func(sub string) bool { return !subs[sub] })
			} else {
				out[k] = v
			}
		}
	}
	return out
}

func subsOf(set map[string]bool, attr string) map[string]bool {
	var subs map[string]bool
	for k := range set {
		if a, sub, ok := strings.Cut(k, "."); ok && a == attr {
			if subs == nil {
				subs = map[string]bool{}
			}
			subs[sub] = true
		}
	}
	return subs
}

func keepSubs(v any, keep func(string) bool) any {
	filterObj := func(m map[string]any) map[string]any {
		out := map[string]any{}
		for k, sv := range m {
			if keep(strings.ToLower(k)) {
				out[k] = sv
			}
		}
		return out
	}
	switch x := v.(type) {
	case map[string]any:
		return filterObj(x)
	case []any:
		out := make([]any, 0, len(x))
		for _, item := range x {
			if m, ok := item.(map[string]any); ok {
				out = append(out, filterObj(m))
			} else {
				out = append(out, item)
			}
		}
		return out
	}
	return v
}
