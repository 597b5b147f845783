package scim

import (
	"net/http"
	"strings"

	filter "github.com/scim2/filter-parser/v2"

	"github.com/licenseledger/ledger/domain/ledger"
)

// ignored are the User attributes the ledger does not keep: a PATCH or
// PUT may set them (identity providers send them by default) and nothing
// changes.
var ignored = map[string]bool{
	"nickname": true, "profileurl": true, "title": true, "usertype": true,
	"preferredlanguage": true, "locale": true, "timezone": true, "password": true,
	"phonenumbers": true, "ims": true, "photos": true, "addresses": true, "groups": true,
	"entitlements": true, "x509certificates": true,
}

// patch applies a PatchOp body (RFC 7644 section 3.5.2) to the profile p.
// Operation names are case-insensitive ("Replace" from Microsoft Entra
// ID); an operation without a path carries an object of attributes, whose
// names may be paths ("name.givenName").
func patch(m map[string]any, p profile) (profile, error) {
	if err := checkSchemas(m, SchemaPatchOp); err != nil {
		return p, err
	}
	if _, ok := get(m, "schemas"); !ok {
		return p, invalidSyntax("a PATCH body names the schema %s", SchemaPatchOp)
	}
	v, _ := get(m, "Operations")
	ops, ok := v.([]any)
	if !ok || len(ops) == 0 {
		return p, invalidSyntax("a PATCH body holds a non-empty Operations array")
	}
	for i, o := range ops {
		obj, ok := o.(map[string]any)
		if !ok {
			return p, invalidSyntax("Operations[%d] must be an object", i)
		}
		opv, _ := get(obj, "op")
		op, _ := opv.(string)
		op = strings.ToLower(op)
		if op != "add" && op != "replace" && op != "remove" {
			return p, invalidSyntax("Operations[%d].op must be add, replace or remove", i)
		}
		pathv, hasPath := get(obj, "path")
		path, _ := pathv.(string)
		value, hasValue := get(obj, "value")
		if op != "remove" && !hasValue {
			return p, invalidSyntax("Operations[%d] (%s) needs a value", i, op)
		}
		var err error
		switch {
		case hasPath && strings.TrimSpace(path) != "":
			p, err = patchPath(p, op, path, value)
		case op == "remove":
			return p, &Error{Status: http.StatusBadRequest, ScimType: "noTarget", Detail: "a remove operation needs a path"}
		default:
			attrs, ok := value.(map[string]any)
			if !ok {
				return p, invalidSyntax("Operations[%d] has no path: its value must be an object of attributes", i)
			}
			for k, av := range attrs {
				if isExtension(k) {
					continue // an extension's attributes: not kept
				}
				if strings.EqualFold(k, SchemaUser) {
					sub, ok := av.(map[string]any)
					if !ok {
						return p, invalidValue("%s must be an object of attributes", SchemaUser)
					}
					for sk, sv := range sub {
						if p, err = patchPath(p, op, sk, sv); err != nil {
							return p, err
						}
					}
					continue
				}
				if p, err = patchPath(p, op, k, av); err != nil {
					return p, err
				}
			}
		}
		if err != nil {
			return p, err
		}
	}
	return p, nil
}

func invalidPath(format string, args ...any) error {
	e := invalidValue(format, args...).(*Error)
	e.ScimType = "invalidPath"
	return e
}

// patchPath applies one operation on a path, parsed by the scim2 filter
// parser.
func patchPath(p profile, op, raw string, value any) (profile, error) {
	path, err := filter.ParsePath([]byte(raw))
	if err != nil {
		return p, invalidPath("the path %q is not a valid SCIM attribute path", raw)
	}
	ap := path.AttributePath
	if uri := ap.URI(); uri != "" && !strings.EqualFold(uri, SchemaUser) {
		if isExtension(uri) {
			return p, nil // not kept
		}
		return p, invalidPath("the path %q names a schema this service does not know", raw)
	}
	attr := strings.ToLower(ap.AttributeName)
	sub := strings.ToLower(ap.SubAttributeName())
	if sub == "" {
		sub = strings.ToLower(path.SubAttributeName())
	}
	remove := op == "remove"
	str := func() (string, error) {
		s, ok := value.(string)
		if !ok || strings.TrimSpace(s) == "" {
			return "", invalidValue("%s must be a non-empty string", raw)
		}
		return strings.TrimSpace(s), nil
	}
	switch {
	case ignored[attr]:
		return p, nil
	case attr == "externalid" && remove:
		return p, nil // not removable: the ledger records new values only
	case attr == "externalid":
		s, err := str()
		if err == nil {
			p.externalID = s
		}
		return p, err
	case attr == "id" || attr == "meta" || attr == "schemas":
		return p, &Error{Status: http.StatusBadRequest, ScimType: "mutability", Detail: raw + " is read-only"}
	case remove && attr == "roles":
		p.role = ledger.RoleMember
		return p, nil
	case remove:
		return p, &Error{Status: http.StatusBadRequest, ScimType: "mutability", Detail: raw + " is required and cannot be removed"}
	case attr == "active":
		b, err := boolOf("active", value)
		p.active = b
		return p, err
	case attr == "username":
		s, err := str()
		if err == nil {
			p.email = s
		}
		return p, err
	case attr == "displayname":
		s, err := str()
		if err == nil {
			p.name = s
		}
		return p, err
	case attr == "name" && sub == "":
		obj, ok := value.(map[string]any)
		if !ok {
			return p, invalidValue("name must be an object")
		}
		n, err := nameOf(obj, p.name)
		if err != nil {
			return p, err
		}
		if n != "" {
			p.name = n
		}
		return p, nil
	case attr == "name":
		s, err := str()
		if err != nil {
			return p, err
		}
		given, family := splitName(p.name)
		switch sub {
		case "formatted":
			p.name = s
		case "givenname":
			p.name = joinName(s, family)
		case "familyname":
			p.name = joinName(given, s)
		case "middlename", "honorificprefix", "honorificsuffix":
		default:
			return p, invalidPath("name has no sub-attribute %q", sub)
		}
		return p, nil
	case attr == "emails" && (sub != "" || path.ValueExpression != nil):
		if sub != "" && sub != "value" {
			return p, nil // type, primary, display: not kept
		}
		if obj, ok := value.(map[string]any); ok {
			value, _ = get(obj, "value")
		}
		s, err := str()
		if err == nil {
			p.email = s
		}
		return p, err
	case attr == "emails":
		e, err := emailOf(asList(value), false)
		if err == nil && e != "" {
			p.email = e
		}
		return p, err
	case attr == "roles" && (sub != "" || path.ValueExpression != nil):
		if sub != "" && sub != "value" {
			return p, nil
		}
		if obj, ok := value.(map[string]any); ok {
			value, _ = get(obj, "value")
		}
		r, err := roleValue(value)
		if err == nil {
			p.role = *r
		}
		return p, err
	case attr == "roles":
		r, err := roleOf(asList(value))
		if err == nil {
			p.role = *r
		}
		return p, err
	}
	return p, invalidPath("the User schema has no attribute %q this service can change", raw)
}
