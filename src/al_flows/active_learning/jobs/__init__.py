"""The jobs of the active-learning loop, one module per role (as atomate2's ``vasp/jobs``); the
loop's public names are exported by :mod:`al_flows.active_learning`, not here.

- :mod:`.start`: before round 0, the starting structures, the perturbed initial copies, the test set
- :mod:`.training`: train one ensemble member (``TrainMemberMaker``)
- :mod:`.summary`: measure a round, the test-set evaluation and the round summary
- :mod:`.properties`: property convergence, the labeller's reference and each round's member values
- :mod:`.vasp_properties`: the VASP reference of those properties (atomate2 EOS and elastic flows)
- :mod:`.exploration`: explore with the ensemble (``ShearExploreMaker``, ``MDExploreMaker``)
- :mod:`.selection`: classify the explored frames and pick those to label (``SelectMaker``)
- :mod:`.labelling`: label with an ASE calculator (``AseLabelMaker``, its checkpoint, ``LabellingError``)
- :mod:`.vasp_labelling`: label with VASP through atomate2 (``VaspLabelMaker``)
- :mod:`.calibration`: calibrate the trust levels on the round's labels
- :mod:`.merge`: merge the round's labels into the dataset (``merge_labels``)
- :mod:`.autotest`: autotest of the campaign's final potential

The flow that wires them is :mod:`al_flows.active_learning.flows` (one round:
:mod:`al_flows.active_learning.round_jobs`)."""
