"""Thin wrappers over the kernel's files and syscalls, one small function per file, named after it.

Lab and command code above this package never opens a path under /proc or /sys itself.
"""
