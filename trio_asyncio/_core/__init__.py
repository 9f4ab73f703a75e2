"""Layer 1, the loop core: scheduling, timers, tasks, errors, executors.

Nothing here knows how the loop waits (Trio task or native driver) or does
I/O; those layers sit above and import from here, never the reverse.
"""
