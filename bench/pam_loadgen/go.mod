module patron/bench/pam_loadgen

go 1.22
