"""The training core and the model builders."""
