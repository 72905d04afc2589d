"""The course cnnlab teaches: its experiments rerun with its own recipes beside its logged
numbers (:mod:`.reproduce`: E1, E2 in :mod:`.e2`, E4-E8; the course's own Keras code run on the
same images in :mod:`.keras_code`; the report in :mod:`.report`) and its lesson index
(:mod:`.lessons`: every concept in teaching order with the one command that shows it)."""
