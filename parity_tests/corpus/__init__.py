"""A corpus of recurrent models written for this project after well-known public models (their
layers and forward idioms, no upstream code; see README.md for what each is modelled on), plus
idioms.py: small models written the way tutorials write them.

Each module defines make() (and some make_upstream(), or idioms.py's make_* functions) returning
the keyword arguments of jaxseq.parity.check. make_upstream() setups describe the upstream training
loop more faithfully with check's keys: `hidden` (a state carried, detached,
across batches: output, hidden = model(*inputs, hidden)), a torch.optim optimizer of any class,
and a loss given as a torch loss module or function.

    CORPUS           every (module name, function name) pair
    PLAIN            the pairs whose setup needs only check's own keywords (every make*())
    UPSTREAM         the make_upstream() pairs
"""

PLAIN = [
    ("wlm_rnn", "make"),
    ("wlm_transformer", "make"),
    ("time_sequence", "make"),
    ("char_rnn_classification", "make"),
    ("seq2seq_translation", "make"),
    ("yunjey_rnn", "make"),
    ("yunjey_birnn", "make"),
    ("yunjey_rnnlm", "make"),
    ("deepspeech_torchaudio", "make"),
    ("algoperf_deepspeech", "make"),
    ("lstnet", "make"),
    ("mnist_rnn", "make"),
    ("idioms", "make_zeros_state"),
    ("idioms", "make_masked"),
    ("idioms", "make_lstmcell_loop"),
    ("idioms", "make_conv_bn_bigru"),
    ("idioms", "make_mha_over_lstm"),
    ("idioms", "make_cumsum_where_detach"),
]

UPSTREAM = [
    ("wlm_rnn", "make_upstream"),
    ("time_sequence", "make_upstream"),
    ("char_rnn_classification", "make_upstream"),
    ("yunjey_rnnlm", "make_upstream"),
    ("lstnet", "make_upstream"),
    ("mnist_rnn", "make_upstream"),
]

CORPUS = PLAIN + UPSTREAM
