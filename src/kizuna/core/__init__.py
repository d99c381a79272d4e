"""Things every area needs: settings, the clock, the error base."""
