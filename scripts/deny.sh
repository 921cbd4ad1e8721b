#!/usr/bin/env bash
# Dependency checks with cargo-deny (advisories, licences, bans, sources; config in deny.toml),
# fully offline: the advisory database comes from a local snapshot and is never fetched.
#
#   scripts/deny.sh                 all checks
#   scripts/deny.sh advisories      only the named check(s) (advisories|bans|licenses|sources)
#
# Environment:
#   AIRWAVE_ADVISORY_DB   the RustSec advisory-db as plain files (a `crates/` folder; a SNAPSHOT
#                         file giving its date is optional). Default: shared/rustsec-advisory-db
#                         next to the repository.
#   AIRWAVE_TOOLS_DIR     where cargo-deny is installed (default ~/.cache/airwave-tools), as for
#                         the other test tools (scripts/services.sh).
#
# How the database is wired: cargo-deny opens `<db-path>/<name>-<hash of the db URL>` and wants a
# git repository there (it reads HEAD's commit date to judge staleness). This script makes a temp
# dir, copies the snapshot into the subdirectory for the URL in deny.toml, commits it with a fixed
# identity dated at the snapshot's date, points deny.toml's db-path at it (AIRWAVE_DENY_DB_ROOT) and
# runs cargo-deny with --frozen (= --offline --locked: no database fetch, no index update, and
# Cargo.lock is never rewritten). The temp dir is removed on exit.
set -euo pipefail

CARGO_DENY_VERSION=0.20.2
# cargo-deny's folder name for db-urls = ["https://github.com/RustSec/advisory-db"] in deny.toml:
# the URL's last path segment plus its XxHash64. Depends on both the URL and the cargo-deny
# version; if either changes, get the new name from the "Opening advisory database at" line of
# `cargo-deny -L debug --frozen check advisories`.
DB_DIR_NAME=advisory-db-3157b0e258782691
# Keep in step with [graph] targets in deny.toml (crates for these are made sure to be downloaded).
TARGET=x86_64-unknown-linux-gnu
# A snapshot older than this gets a warning (deny.toml's maximum-db-staleness is the hard limit).
WARN_AGE_DAYS=90

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# The snapshot lives beside the project's checkout (../shared); a clone elsewhere (CI's) finds
# the machine's copy under /work/shared.
if [ -n "${AIRWAVE_ADVISORY_DB:-}" ]; then
  db_src=$AIRWAVE_ADVISORY_DB
elif [ -d "$repo/../shared/rustsec-advisory-db/crates" ]; then
  db_src="$repo/../shared/rustsec-advisory-db"
else
  db_src=/work/shared/rustsec-advisory-db
fi
tools="${AIRWAVE_TOOLS_DIR:-$HOME/.cache/airwave-tools}"
deny="$tools/bin/cargo-deny"

start=$(date +%s)

# (a) The pinned cargo-deny, installed from crates.io when missing or of another version.
if [[ ! -x "$deny" ]] || [[ "$("$deny" --version 2>/dev/null)" != "cargo-deny $CARGO_DENY_VERSION" ]]; then
  echo "deny.sh: installing cargo-deny $CARGO_DENY_VERSION into $tools (takes a few minutes)" >&2
  build_dir="$(mktemp -d "${TMPDIR:-/tmp}/airwave-deny-build.XXXXXX")"
  CARGO_TARGET_DIR="$build_dir" cargo install cargo-deny --locked --version "$CARGO_DENY_VERSION" \
    --root "$tools" --no-default-features --force
  rm -rf "$build_dir"
fi

# (b) The advisory database, from the plain-file snapshot, as a local git repository.
if [[ ! -d "$db_src/crates" ]]; then
  echo "deny.sh: no advisory database at $db_src (expected a crates/ folder); set AIRWAVE_ADVISORY_DB" >&2
  exit 1
fi
command -v git >/dev/null || { echo "deny.sh: git is needed to prepare the advisory database" >&2; exit 1; }

# The snapshot's date: from its SNAPSHOT file, else its own git history, else its newest file.
snap_date=""
if [[ -f "$db_src/SNAPSHOT" ]]; then
  snap_date="$(grep -oE '[0-9]{4}-[0-9]{2}-[0-9]{2}' "$db_src/SNAPSHOT" | head -n1 || true)"
fi
if [[ -z "$snap_date" && -e "$db_src/.git" ]]; then
  snap_date="$(git -C "$db_src" log -1 --format=%cs 2>/dev/null || true)"
fi
if [[ -z "$snap_date" ]]; then
  snap_date="$(date -u -d "@$(find "$db_src/crates" -type f -printf '%T@\n' | sort -n | tail -n1 | cut -d. -f1)" +%F)"
fi
snap_ts="${snap_date}T00:00:00Z"
snap_epoch="$(date -u -d "$snap_ts" +%s)"
age_days=$(( ($(date +%s) - snap_epoch) / 86400 ))
if (( age_days > WARN_AGE_DAYS )); then
  echo "deny.sh: warning: the advisory database snapshot is from $snap_date ($age_days days old);" \
    "advisories published since then are not checked. Refresh $db_src." >&2
fi

db_root="$(mktemp -d "${TMPDIR:-/tmp}/airwave-advisory-dbs.XXXXXX")"
trap 'rm -rf "$db_root"' EXIT
db="$db_root/$DB_DIR_NAME"
mkdir -p "$db"
cp -R "$db_src/." "$db/"
rm -rf "$db/.git"
(
  cd "$db"
  # Isolated from any user/system git config (hooks, signing, templates); fixed identity and date.
  export GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null GIT_TERMINAL_PROMPT=0
  export GIT_AUTHOR_NAME=airwave-deny GIT_AUTHOR_EMAIL=airwave-deny@localhost
  export GIT_COMMITTER_NAME=airwave-deny GIT_COMMITTER_EMAIL=airwave-deny@localhost
  export GIT_AUTHOR_DATE="$snap_ts" GIT_COMMITTER_DATE="$snap_ts"
  git init -q -b main --template= .
  git add -A
  git -c commit.gpgsign=false commit -q --no-verify -m "RustSec advisory-db snapshot $snap_date"
)
# cargo-deny dates a repository without FETCH_HEAD by the later of HEAD's commit date and the
# mtime of .git/HEAD; date the file too, so the staleness check sees the snapshot's real age.
touch -d "$snap_ts" "$db/.git/HEAD"

# Offline, the crates of the target must already be in the cargo cache (a build normally puts
# them there). On a fresh machine, download them from crates.io first: apart from installing
# cargo-deny, the only network use (and never the advisory database).
if ! cargo metadata --manifest-path "$repo/Cargo.toml" --format-version 1 --offline --locked \
  --filter-platform "$TARGET" >/dev/null 2>&1; then
  echo "deny.sh: downloading the crates in Cargo.lock for $TARGET from crates.io" >&2
  cargo fetch --manifest-path "$repo/Cargo.toml" --locked --target "$TARGET"
fi

# (c) All checks (or the ones named), nothing fetched; non-zero exit on any error.
run_deny() {
  AIRWAVE_DENY_DB_ROOT="$db_root" "$deny" --frozen \
    --manifest-path "$repo/Cargo.toml" --config "$repo/deny.toml" \
    check "$@"
}
# Without inclusion graphs first: the duplicate-version warnings alone would print ~3,000 lines.
# Then the checks that failed are run again with them, to show how each offending crate gets
# into the graph.
log="$db_root/deny.log"
status=0
run_deny --hide-inclusion-graph "${@:-all}" 2>&1 | tee "$log" || status=$?
if (( status != 0 )); then
  failed=$(grep -oE '\b(advisories|bans|licenses|sources) FAILED' "$log" | cut -d' ' -f1 | sort -u || true)
  if [[ -n "$failed" ]]; then
    # shellcheck disable=SC2086 # one word per failed check
    echo "deny.sh: failed:" $failed "- once more with the inclusion graphs:" >&2
    # shellcheck disable=SC2086
    run_deny $failed || true
  fi
fi

echo "deny.sh: cargo-deny $CARGO_DENY_VERSION, advisory db snapshot $snap_date, $(( $(date +%s) - start ))s," \
  "$([[ $status == 0 ]] && echo passed || echo "FAILED (exit $status)")" >&2
exit "$status"
