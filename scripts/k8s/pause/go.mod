module weft.local/pause

go 1.22
