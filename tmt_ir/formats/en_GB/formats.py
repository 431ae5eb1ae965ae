from tmt_ir.formats.en.formats import *  # noqa: F403 - the same ISO formats for British English
