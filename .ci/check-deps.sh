#!/usr/bin/env bash
# Fails if one top-level sibling package (supervisor, mux, auth, vault, providers,
# skills, audit, metrics, statuspage, store, api, usage, remote, oauth) imports another. Only cmd wires them.
set -euo pipefail
mod=$(go list -m)
siblings="supervisor mux auth vault providers skills audit metrics statuspage store api usage remote oauth"
bad=0
while read -r pkg imports; do
  pkg=${pkg%:}
  top=${pkg#"$mod"/}; top=${top%%/*}
  case " $siblings " in *" $top "*) ;; *) continue;; esac
  for imp in $imports; do
    case "$imp" in "$mod"/*) ;; *) continue;; esac
    itop=${imp#"$mod"/}; itop=${itop%%/*}
    if [ "$itop" != "$top" ] && [[ " $siblings " == *" $itop "* ]]; then
      echo "dependency violation: $pkg imports $imp"; bad=1
    fi
  done
done < <(go list -f '{{.ImportPath}}: {{join .Imports " "}}' ./...)
[ $bad -eq 0 ] && echo "deps: ok"
exit $bad
