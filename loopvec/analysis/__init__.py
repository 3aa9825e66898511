"""Static analysis: the parsed module, loop domains and the loop IR shared by all patterns."""
