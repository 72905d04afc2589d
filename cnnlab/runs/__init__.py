"""A run, from its settings to its uses: :mod:`.start` trains one into a run folder
(train, resume, transfer), :mod:`.load` reads a finished one back as a working model
(evaluate, predict), :mod:`.export` writes it as ONNX or safetensors, and :mod:`.sources`
says which model a piece of text means (a run folder first, then a model name) and what
an IMAGE text means. The files of a run folder are :mod:`cnnlab.run_folder`'s."""
