"""Built-in transforms, one module each; bridge.registry imports one when its type is first looked up."""
