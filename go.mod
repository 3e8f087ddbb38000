module github.com/samlha/samlha

go 1.26.0
