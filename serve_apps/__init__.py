"""Ray Serve applications. ``destinations`` serves next-destination recommendations over HTTP."""
