"""Legacy agents ported to the SDK, as worked examples."""
