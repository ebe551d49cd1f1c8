"""The Dockerfile scanner of mirror/include/dockerfile.py again, in POSIX awk, for the generated
script: `sh pull.sh Dockerfile` finds the images a Dockerfile uses with no mirror and no
Python in the build image. One table of cases (tests/unit/test_dockerfile.py) runs both
scanners and expects the same references from each.

It prints one reference a line, as written with ARGs substituted: the `# syntax=`
frontend, `FROM` images (not stages, not scratch), `COPY --from=` and
`RUN --mount=...,from=` images (not stages, not stage indexes).
"""

from __future__ import annotations

__all__ = ["DOCKERFILE_AWK"]

_READABLE = r"""
function subst(s,    out, name, op, alt, body, cur, i) {
  out = ""
  while (match(s, /\$(\{[A-Za-z0-9_]+(:?[-+][^}]*)?\}|[A-Za-z0-9_]+)/)) {
    out = out substr(s, 1, RSTART - 1)
    body = substr(s, RSTART + 1, RLENGTH - 1)
    s = substr(s, RSTART + RLENGTH)
    op = ""; alt = ""
    if (substr(body, 1, 1) == "{") {
      body = substr(body, 2, length(body) - 2)
      name = body
      if (match(body, /:?[-+]/)) {
        name = substr(body, 1, RSTART - 1)
        op = substr(body, RSTART + RLENGTH - 1, 1)
        alt = substr(body, RSTART + RLENGTH)
      }
    } else {
      name = body
    }
    cur = (name in args) ? args[name] : ""
    if (op == "-") out = out ((cur != "") ? cur : alt)
    else if (op == "+") out = out ((cur != "") ? alt : "")
    else out = out cur
  }
  return out s
}
function image_or_stage(s,    image) {
  image = subst(s)
  if (!(tolower(image) in stages) && image !~ /^[0-9]+$/) print image
}
function handle(instr,    n, w, i, j, k, m, kw, name, val, eq, image, ws, flag, parts) {
  n = split(instr, w, /[ \t]+/)
  kw = toupper(w[1])
  if (kw == "ARG" && !seen_from) {
    for (i = 2; i <= n; i++) {
      eq = index(w[i], "=")
      if (eq) {
        name = substr(w[i], 1, eq - 1); val = substr(w[i], eq + 1)
        gsub(/^["']|["']$/, "", val)
        args[name] = subst(val)
      } else if (!(w[i] in args)) {
        args[w[i]] = ""
      }
    }
  } else if (kw == "FROM") {
    seen_from = 1; j = 0
    for (i = 2; i <= n; i++) if (w[i] !~ /^--/) ws[++j] = w[i]
    if (j == 0) return
    image = subst(ws[1])
    if (j >= 3 && toupper(ws[2]) == "AS") { new_stage = tolower(ws[3]) } else { new_stage = "" }
    if (!(tolower(image) in stages) && tolower(image) != "scratch") print image
    if (new_stage != "") stages[new_stage] = 1
  } else if (kw == "COPY" || kw == "RUN") {
    for (i = 2; i <= n; i++) {
      if (w[i] !~ /^--/) break
      flag = substr(w[i], 3); eq = index(flag, "=")
      if (!eq) continue
      name = substr(flag, 1, eq - 1); val = substr(flag, eq + 1)
      if (kw == "COPY" && name == "from" && val != "") image_or_stage(val)
      if (kw == "RUN" && name == "mount") {
        m = split(val, parts, ",")
        for (k = 1; k <= m; k++)
          if (substr(parts[k], 1, 5) == "from=" && length(parts[k]) > 5)
            image_or_stage(substr(parts[k], 6))
      }
    }
  }
}
BEGIN { directives = 1; seen_from = 0; buf = "" }
{
  line = $0
  sub(/\r$/, "", line)
  if (directives) {
    if (line ~ /^[ \t]*#[ \t]*[A-Za-z]+[ \t]*=[ \t]*[^ \t]+[ \t]*$/) {
      d = line; sub(/^[ \t]*#[ \t]*/, "", d)
      key = d; sub(/[ \t]*=.*$/, "", key)
      val = d; sub(/^[^=]*=[ \t]*/, "", val); sub(/[ \t]+$/, "", val)
      if (tolower(key) == "syntax" && !have_syntax) { print val; have_syntax = 1 }
      next
    }
    directives = 0
  }
  stripped = line; sub(/^[ \t]+/, "", stripped); sub(/[ \t]+$/, "", stripped)
  if (buf == "" && (stripped == "" || substr(stripped, 1, 1) == "#")) next
  if (buf != "" && substr(stripped, 1, 1) == "#") next
  if (substr(stripped, length(stripped), 1) == "\\") {
    buf = buf substr(stripped, 1, length(stripped) - 1) " "
    next
  }
  instr = buf stripped; buf = ""
  handle(instr)
}
END { if (buf != "") handle(buf) }
"""

# What the script carries: the same program, each line without its indentation (awk
# reads no meaning into it), so the script is smaller where it is published.
DOCKERFILE_AWK = "\n".join(line.strip() for line in _READABLE.strip().splitlines())
