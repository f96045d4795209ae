(*
Module: Onetools_oned
  Lens for OpenNebula's oned.conf-like files (oned.conf, monitord.conf, sched.conf,
  schedulers/rank.conf, vmm_exec/vmm_exec_*.conf), written for onetools from the grammar in
  the project's research notes (section 6.1).

  Tree:
    - KEY = VALUE            -> node KEY, value = raw text (quotes kept); a trailing comment
                                becomes a child "#comment" holding "# ..."
    - KEY = [ K = V, ... ]   -> value-less node KEY with children K (raw values) and "#comment"
    - full-line comment      -> "#comment" node, value "# ..." (indentation is not kept in the
                                value, it lives in the skeleton and is re-used on save)
    - blank line             -> unlabeled node (invisible to match("*"))

  Notes learned the hard way:
    - The grammar allows the last line of a file without its newline.  Supporting that inside
      the lens makes every line lens optional-newline and the iteration ambiguous, so the
      Python side (formats/one.py) appends the missing newline before text_store and strips it
      again after text_retrieve.
    - A trailing comment regex must not end in blanks ("#[^\n]*" followed by "[ \t]*\n" is an
      ambiguous concatenation); comments therefore end on a non-blank character and the
      trailing blanks belong to the end-of-line del.
    - Key labels keep their case: onecfg upper-cased them on load, which re-rendered the
      nodes with default layout; onetools compares names case-insensitively in Python instead.
    - Only the layout of *new* nodes comes from the default strings given to del below; nodes
      parsed from the text keep their exact whitespace through text_retrieve.
    - Inside a section the entries are "(entry . comma | comment)* . entry": a node appended
      to an existing section re-uses the old closing whitespace and gets the default comma
      ",\n    " in front (e.g. "[ A = 1,\n    B = 2 ]").  A section left without any entry
      cannot be rendered (the lens needs one), so one.py drops such sections.
    - Augeas un-escapes regexp literals once before compiling them: "\\\\" in this file is
      the regexp \\ (one literal backslash).  Writing "\\\\|\\"" for "escaped backslash or
      escaped quote" therefore produced a regexp accepting a bare quote inside strings, which
      only the type checker (augparse without --notypecheck) revealed as an ambiguity.
    - Inside brackets a backslash is literal for the POSIX engine: "[^\[]" also excludes the
      backslash.  Write "[^[]" to exclude only the bracket.
    - Run "augparse -I src/onetools/config/lenses <test.aug>" to type-check after any change:
      text_store does not type-check and silently picks one split of an ambiguous lens.
    - Performance: Augeas needs ~12 ms to text_store a stock oned.conf and ~40 ms to
      text_retrieve it, even with a trivial line lens (put re-parses the original text and is
      super-linear in the number of sibling nodes).  one.py therefore parses with an
      equivalent Python scanner and creates the Augeas tree only when a change is applied.
*)
module Onetools_oned =

(* Group: regular expressions *)

(* Variable: name_re  parameter and section names (any case) *)
let name_re = /[A-Za-z0-9_]+/

(* Variable: quoted  a double-quoted string; only \\ and \" escapes, may span lines *)
let quoted = /"([^"\\]|\\\\[\\"])*"/

(* Variable: value_re  top-level value: quoted, or bare without blanks, quotes, [ and # *)
let value_re = quoted | /[^ \t\n"[#]+/

(* Variable: svalue_re  value inside a section: quoted, or bare without blanks, quotes, # and , *)
let svalue_re = quoted | /[^ \t\n"#,]+/

(* Variable: comment_re  a comment text, never ending in a blank (see the notes above) *)
let comment_re = /#([^\n]*[^ \t\n])?/

(* Group: separators and their default layout for new nodes *)

let indent = del /[ \t]*/ ""
let sep = del /[ \t]*=[ \t]*/ " = "
let eol = del /[ \t]*\n/ "\n"

(* Group: lines outside sections *)

(* View: empty  a blank line (unlabeled node so that iteration stays unambiguous) *)
let empty = [ del /[ \t]*\n/ "\n" ]

(* View: comment  a full-line comment, optionally indented *)
let comment = [ indent . label "#comment" . store comment_re . eol ]

(* View: trailing_comment  a comment after a top-level value *)
let trailing_comment = [ del /[ \t]*/ " " . label "#comment" . store comment_re ]

(* View: top  KEY = VALUE [# comment] *)
let top = [ indent . key name_re . sep . store value_re . trailing_comment? . eol ]

(* Group: sections *)

(* View: entry  K = V inside a section *)
let entry = [ key name_re . sep . store svalue_re ]

(* Variable: comma  entry separator; blank lines may follow it *)
let comma = del /[ \t]*,[ \t\n]*/ ",\n    "

(* View: inner_comment  a comment between entries (after a comma or another comment) *)
let inner_comment = [ label "#comment" . store comment_re . del /[ \t]*\n[ \t\n]*/ "\n    " ]

(* View: tail_comment  a comment after the last entry, before the closing bracket *)
let tail_comment = [ label "#comment" . store comment_re . del /[ \t]*\n[ \t\n]*/ "\n" ]

(* View: section  KEY = [ entries ] *)
let section =
  [ indent . key name_re . sep
  . del /\[[ \t\n]*/ "[\n    "
  . ( entry . comma | inner_comment )*
  . entry
  . del /[ \t\n]*/ "\n"
  . tail_comment*
  . del /\][ \t]*\n/ "]\n" ]

(* View: lns  the whole file *)
let lns = ( empty | comment | top | section )*
