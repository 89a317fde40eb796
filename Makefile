# The two commands of the README.
.PHONY: book test paper clean

book:  ## build everything: environment, data, notebooks (default profile), HTML book
	bash scripts/build_book.sh

test:  ## unit tests + every notebook in the smoke profile, the paper-smoke tier beside them (what CI runs)
	bash scripts/test.sh

paper:  ## every chapter in the `paper` profile on a GPU, on the datasets present (stand-ins where absent, said so)
	bash scripts/paper.sh

clean:  ## remove build products (keeps datasets and trained-model cache)
	rm -rf _build book/executed
