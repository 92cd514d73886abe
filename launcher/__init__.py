"""The `phalanx` launcher: `phalanx run` spawns, watches and restarts workers; `phalanx store`
serves a rendezvous store. It manages processes only and never imports the tensor engine."""
