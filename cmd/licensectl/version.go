package main

import (
	"flag"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"sort"
	"strings"
)

// version is the release, set at link time with
// -ldflags "-X main.version=v1.2.3"; otherwise the module's version or the
// commit it was built from is shown.
var version = ""

// versionString is licensectl's version: the release, the module version,
// or "devel" with the commit when built from a checkout.
func versionString() string {
	if version != "" {
		return version
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "devel"
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	v := "devel"
	var rev, modified string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			modified = s.Value
		}
	}
	if rev != "" {
		v += "+" + rev[:min(12, len(rev))]
		if modified == "true" {
			v += "-dirty"
		}
	}
	return v
}

func (c *cli) printVersion(args []string) error {
	if len(args) > 0 {
		return &usageError{msg: "version takes no argument", usage: "version"}
	}
	fmt.Fprintf(c.stdout, "licensectl %s %s %s/%s\n", versionString(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return nil
}

// completionWords are the words completion offers: the verbs, the
// subverbs of each, and the flags of each verb and of every verb.
func completionWords() (verbs []string, subs map[string][]string, flags map[string][]string, global []string) {
	subs, flags = map[string][]string{}, map[string][]string{}
	seen := map[string]bool{}
	for _, cmd := range commands {
		first, sub, _ := strings.Cut(cmd.name, " ")
		if !seen[first] {
			seen[first] = true
			verbs = append(verbs, first)
		}
		if sub != "" {
			subs[first] = append(subs[first], sub)
		}
		if cmd.flags != nil {
			var f verbFlags
			fs := newFlagSet()
			cmd.flags(fs, &f)
			fs.VisitAll(func(fl *flagT) { flags[cmd.name] = append(flags[cmd.name], "--"+fl.Name) })
			sort.Strings(flags[cmd.name])
		}
	}
	verbs = append(verbs, "help", "version", "completion")
	probe := newFlagSet()
	(&globals{}).register(probe)
	probe.VisitAll(func(fl *flagT) {
		if len(fl.Name) > 1 {
			global = append(global, "--"+fl.Name)
		}
	})
	return verbs, subs, flags, global
}

func (c *cli) printCompletion(args []string) error {
	const usage = "completion bash|zsh|fish"
	if len(args) != 1 {
		return &usageError{msg: "completion takes the shell: bash, zsh or fish", usage: usage}
	}
	verbs, subs, flags, global := completionWords()
	var b strings.Builder
	switch args[0] {
	case "bash", "zsh":
		if args[0] == "zsh" {
			b.WriteString("#compdef licensectl\nautoload -U +X bashcompinit && bashcompinit\n")
		}
		b.WriteString("# licensectl completion for " + args[0] + `: source <(licensectl completion ` + args[0] + ")\n")
		b.WriteString("_licensectl() {\n  local cur=\"${COMP_WORDS[COMP_CWORD]}\" verb=\"\" sub=\"\" w i\n")
		b.WriteString("  for ((i=1; i<COMP_CWORD; i++)); do\n    w=\"${COMP_WORDS[i]}\"\n    [[ $w == -* ]] && continue\n")
		b.WriteString("    if [[ -z $verb ]]; then verb=$w; elif [[ -z $sub ]]; then sub=$w; fi\n  done\n")
		b.WriteString("  local words=\"\"\n  if [[ $cur == -* ]]; then\n    case \"$verb $sub\" in\n")
		// Verbs of two words first: "audit verify" before "audit ACCOUNT".
		for _, two := range []bool{true, false} {
			for _, cmd := range commands {
				if strings.Contains(cmd.name, " ") != two {
					continue
				}
				key := `"` + cmd.name + `"`
				if !two {
					key = cmd.name + `" "*`
				}
				fmt.Fprintf(&b, "      %s) words=%q ;;\n", key, strings.Join(flags[cmd.name], " "))
			}
		}
		b.WriteString("    esac\n    words=\"$words " + strings.Join(global, " ") + "\"\n")
		b.WriteString("  elif [[ -z $verb ]]; then\n    words=\"" + strings.Join(verbs, " ") + "\"\n")
		b.WriteString("  elif [[ -z $sub ]]; then\n    case $verb in\n")
		for _, v := range verbs {
			if s := subs[v]; len(s) > 0 {
				fmt.Fprintf(&b, "      %s) words=%q ;;\n", v, strings.Join(s, " "))
			}
		}
		b.WriteString("      completion) words=\"bash zsh fish\" ;;\n    esac\n  fi\n")
		b.WriteString("  COMPREPLY=($(compgen -W \"$words\" -- \"$cur\"))\n}\ncomplete -o default -F _licensectl licensectl\n")
	case "fish":
		b.WriteString("# licensectl completion for fish: licensectl completion fish | source\n")
		b.WriteString("complete -c licensectl -f\n")
		for _, v := range verbs {
			fmt.Fprintf(&b, "complete -c licensectl -n __fish_use_subcommand -a %s\n", v)
			if s := subs[v]; len(s) > 0 {
				fmt.Fprintf(&b, "complete -c licensectl -n '__fish_seen_subcommand_from %s' -a '%s'\n", v, strings.Join(s, " "))
			}
		}
		b.WriteString("complete -c licensectl -n '__fish_seen_subcommand_from completion' -a 'bash zsh fish'\n")
		for _, g := range global {
			fmt.Fprintf(&b, "complete -c licensectl -l %s\n", strings.TrimPrefix(g, "--"))
		}
		for _, cmd := range commands {
			first, sub, _ := strings.Cut(cmd.name, " ")
			cond := "__fish_seen_subcommand_from " + first
			if sub != "" {
				cond += "; and __fish_seen_subcommand_from " + sub
			}
			for _, f := range flags[cmd.name] {
				fmt.Fprintf(&b, "complete -c licensectl -n '%s' -l %s\n", cond, strings.TrimPrefix(f, "--"))
			}
		}
	default:
		return &usageError{msg: fmt.Sprintf("completion is for bash, zsh or fish, not %q", args[0]), usage: usage}
	}
	_, err := fmt.Fprint(c.stdout, b.String())
	return err
}

type flagT = flag.Flag

func newFlagSet() *flag.FlagSet {
	fs := flag.NewFlagSet("", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return fs
}
