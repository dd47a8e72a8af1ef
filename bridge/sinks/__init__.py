"""Built-in sinks, one module (or package) each; bridge.registry imports one when its type is first looked up."""
