"""Routes, one module per resource; each parses, calls one engine/store function, answers."""
