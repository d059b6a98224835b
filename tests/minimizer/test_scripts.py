"""#! lines as the kernel reads them."""

from __future__ import annotations

import pytest

from minimizer.scripts import module_folder_patterns, parse_shebang


@pytest.mark.parametrize(
    ("head", "interp", "arg", "command"),
    [
        (b"#!/bin/sh -e\necho", b"/bin/sh", b"-e", None),
        (b"#! /usr/bin/perl -w -T\n", b"/usr/bin/perl", b"-w -T", None),
        (b"#!/usr/bin/env python3\n", b"/usr/bin/env", b"python3", b"python3"),
        (b"#!/usr/bin/env -S node --harmony\n", b"/usr/bin/env", b"-S node --harmony", b"node"),
        (b"#!/usr/bin/env -u X A=1 ruby\n", b"/usr/bin/env", b"-u X A=1 ruby", b"ruby"),
        (b"#!/bin/bash\r\n", b"/bin/bash", None, None),
        (b"#!/opt/x/bin/interp", b"/opt/x/bin/interp", None, None),
    ],
)
def test_parse(head: bytes, interp: bytes, arg: bytes | None, command: bytes | None) -> None:
    sb = parse_shebang(head)
    assert sb is not None
    assert (sb.interpreter, sb.argument, sb.command) == (interp, arg, command)


@pytest.mark.parametrize("head", [b"", b"#", b"#!", b"#!   \n", b"\x7fELF", b"echo hi"])
def test_not_a_script(head: bytes) -> None:
    assert parse_shebang(head) is None


def test_module_folders() -> None:
    assert b"/usr/lib/python3.11" in module_folder_patterns(b"/usr/bin/python3.11")
    assert b"/usr/local/lib/python3.12" in module_folder_patterns(b"/usr/local/bin/python3.12")
    assert b"/usr/share/perl5" in module_folder_patterns(b"/usr/bin/perl")
    assert b"/usr/share/nodejs" in module_folder_patterns(b"/usr/bin/node")
    assert module_folder_patterns(b"/usr/bin/dash") == []
