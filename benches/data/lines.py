"""Writes the text of docs/post-training.md's regex measurement: 4,000 short lines, about half
of them of the form `the NOUN is ADJECTIVE` (they match the regex `the [a-z]+ is [a-z]+`), the
others of three other forms. Seeded, so the file is the same every time.

    python3 benches/data/lines.py > lines.txt
"""
import random

rng = random.Random(0)
nouns = "cat dog sun king tree bird fish moon star door ship lamp rose wolf hill".split()
adjs = "red old big calm cold dark fast kind new soft wild pale warm loud slow".split()
verbs = "ran sat fell sang grew went hid swam ate slept".split()
places = "far away home here there".split()
for _ in range(4000):
    if rng.random() < 0.5:
        print(f"the {rng.choice(nouns)} is {rng.choice(adjs)}")
    else:
        form = rng.randrange(3)
        if form == 0:
            print(f"a {rng.choice(nouns)} {rng.choice(verbs)} {rng.choice(places)}")
        elif form == 1:
            print(f"{rng.choice(nouns)} and {rng.choice(nouns)}")
        else:
            print(f"my {rng.choice(adjs)} {rng.choice(nouns)} {rng.choice(verbs)}")
