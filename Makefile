# Thin aliases for tasks.py (which needs only Python and git).
.PHONY: build test test-all bench setup
build:    ; python3 tasks.py build
test:     ; python3 tasks.py test
test-all: ; python3 tasks.py test-all
bench:    ; python3 tasks.py bench
setup:    ; python3 tasks.py setup
