"""Models inside a `pruning()` block (no nesting; stage-1 saliency needs every token, so it refuses them)."""
import weakref

ACTIVE: "weakref.WeakSet" = weakref.WeakSet()
